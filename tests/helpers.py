"""Small shared builders for the tests: a tiny Y-SegFormer and short synthetic videos."""
from __future__ import annotations

import jax
import numpy as np

from pathlib import Path

from ttt_jax.cli.config_io import load_config_file
from ttt_jax.data import synthetic
from ttt_jax.methods.model_source import load_source_model
from ttt_jax.methods.video_run import VideoRunner


def tiny_config(**method):
  """configs/smoke.py with method overrides. Sharing its settings lets the tests
  reuse each other's compiled programs through the persistent cache."""
  c = load_config_file(Path(__file__).resolve().parent.parent / "configs" / "smoke.py")
  for k, v in method.items():
    c.method[k] = v
  return c


def tiny_runner(driver="scan", **method):
  c = tiny_config(**method)
  c.engine.driver = driver
  v, mc, _ = load_source_model(c.model, c.data.num_classes)
  return VideoRunner(c, v, mc), c


def video(seed=0, t=6, h=32, w=32):
  f, l, _ = synthetic.make_video(synthetic.VideoSpec(seed=seed, num_frames=t, height=h, width=w))
  return f, l


def random_frames(t=6, h=32, w=32, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def trees_equal(a, b) -> bool:
  """Every leaf of two pytrees of the same structure equal, bit for bit."""
  return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
