"""Offline TTT-MAE on all frames: every frame in memory, n steps in any order, then predict frozen.

  ttt-jax run configs/offline.py --out runs/offline
"""
from ttt_jax.methods.defaults import video_config


def get_config():
  c = video_config()
  c.method.name = 'offline'
  c.method.objective = 'mae'
  c.method.mode = 'offline'
  c.method.offline_iters = 48
  return c
