"""Smoke test: a tiny random SegFormer, online TTT-MAE, two short videos.

  ttt-jax run configs/smoke.py --out /tmp/smoke
"""
from ttt_jax.methods.defaults import video_config


def get_config():
  c = video_config()
  c.method.name = "online_ttt_mae"
  c.method.batch_size = 4
  c.method.window = 4
  c.method.lr = 1e-3       # large enough that a random tiny model visibly adapts
  c.method.clip_norm = 1.0
  c.model.checkpoint = "random"
  c.model.size = "tiny"
  c.data.num_videos = 2
  c.data.num_frames = 6
  c.data.height = 32
  c.data.width = 32
  return c
