"""Ablation: explicit memory only (window of 16 frames, weights reset every frame).

  ttt-jax run configs/explicit_only.py --out runs/explicit_only
"""
from ttt_jax.methods.defaults import video_config


def get_config():
  c = video_config()
  c.method.name = 'explicit_only'
  c.method.objective = 'mae'
  c.method.mode = 'explicit'
  c.method.window = 16
  return c
