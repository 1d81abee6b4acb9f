"""Ablation: implicit memory only (weights carried, batch from the current frame).

  ttt-jax run configs/implicit_only.py --out runs/implicit_only
"""
from ttt_jax.methods.defaults import video_config


def get_config():
  c = video_config()
  c.method.name = 'implicit_only'
  c.method.objective = 'mae'
  c.method.mode = 'implicit'
  c.method.window = 1
  return c
