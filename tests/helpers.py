"""Small shared builders for the tests: a tiny Y-SegFormer and short synthetic videos."""
from __future__ import annotations

import numpy as np

from ttt_jax.data import synthetic
from ttt_jax.methods.defaults import video_config
from ttt_jax.methods.model_source import load_source_model
from ttt_jax.methods.video_run import VideoRunner


def tiny_config(**method):
  c = video_config()
  c.model.checkpoint = "random"
  c.model.size = "tiny"
  c.method.batch_size = 2
  c.method.window = 3
  c.method.lr = 1e-3  # large enough that adaptation visibly changes predictions
  c.method.clip_norm = 1.0
  c.data.num_videos = 2
  c.data.num_frames = 5
  c.data.height = 32
  c.data.width = 32
  for k, v in method.items():
    c.method[k] = v
  return c


def tiny_runner(driver="scan", **method):
  c = tiny_config(**method)
  c.engine.driver = driver
  v, mc, _ = load_source_model(c.model, c.data.num_classes)
  return VideoRunner(c, v, mc), c


def video(seed=0, t=5, h=32, w=32):
  f, l, _ = synthetic.make_video(synthetic.VideoSpec(seed=seed, num_frames=t, height=h, width=w))
  return f, l


def random_frames(t=5, h=32, w=32, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)
