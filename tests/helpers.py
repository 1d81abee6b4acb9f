"""Small shared builders for the tests: tiny configs (the configs' own 'tiny'
variant, overridden as on the command line) and short synthetic videos."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import numpy as np

from ttt_jax.cli.config_io import apply_overrides, load_config_file
from ttt_jax.data import synthetic
from ttt_jax.runner.run import make_runner

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
BENCHMARKS = CONFIGS.parent / "benchmarks"


def load_benchmark(name: str, monkeypatch=None):
  """benchmarks/<name>.py as a module. With `monkeypatch` its folder comes first on
  sys.path for the test, as when the script is run (the scripts import each other by
  name); without, for a module that imports none of them (profiling.py)."""
  if monkeypatch is not None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
  spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def tiny_config(name: str = "online_ttt_mae", *overrides: str):
  """`configs/<name>.py:tiny` with `KEY=VALUE` overrides. Runs of one kind share
  their compiled program (runtime settings), through the persistent cache."""
  return apply_overrides(load_config_file(f"{CONFIGS / name}.py:tiny"), list(overrides))


def tiny_runner(name: str = "online_ttt_mae", *overrides: str):
  c = tiny_config(name, *overrides)
  return make_runner(c)[0], c


def video(seed=0, t=6, h=32, w=32):
  f, l, _ = synthetic.make_video(synthetic.VideoSpec(seed=seed, num_frames=t, height=h, width=w))
  return f, l


def random_frames(t=6, h=32, w=32, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def trees_equal(a, b) -> bool:
  """Every leaf of two pytrees of the same structure equal, bit for bit."""
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))
