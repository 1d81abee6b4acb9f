"""Test set-up: 4 simulated CPU devices and a shared persistent compilation cache."""
import os
from pathlib import Path

import jax

jax.config.update("jax_num_cpu_devices", 4)
# XLA:CPU compilation dominates the suite; identical programs compiled by several
# tests (or xdist workers) are compiled once.
_cache = Path(__file__).resolve().parent.parent / ".pytest_cache" / "xla"
_cache.mkdir(parents=True, exist_ok=True)
jax.config.update("jax_compilation_cache_dir", str(_cache))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
os.environ.setdefault("TTT_JAX_TEST", "1")
# Implicit rank promotion hides shape bugs: every test runs with it refused.
jax.config.update("jax_numpy_rank_promotion", "raise")
