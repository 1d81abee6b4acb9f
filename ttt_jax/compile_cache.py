"""Persistent XLA compilation cache for the command line and benchmarks.

XLA:CPU takes tens of seconds to compile a TTT step; identical programs (same
method, model and shapes) are compiled once per machine. Set TTT_JAX_CACHE_DIR
to move the cache, or TTT_JAX_CACHE_DIR= (empty) to turn it off.
"""
from __future__ import annotations

import os
from pathlib import Path

import jax


def enable(default=Path.home() / ".cache" / "ttt-jax" / "xla") -> str | None:
  d = os.environ.get("TTT_JAX_CACHE_DIR", str(default))
  if not d:
    return None
  Path(d).mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", d)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  return d
