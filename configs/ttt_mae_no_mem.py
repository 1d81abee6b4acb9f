"""TTT-MAE, no memory: reset to the source weights every frame, train on the current frame only.

  ttt-jax run configs/ttt_mae_no_mem.py --out runs/ttt_mae_no_mem
"""
from ttt_jax.methods.defaults import video_config


def get_config():
  c = video_config()
  c.method.name = 'ttt_mae_no_mem'
  c.method.objective = 'mae'
  c.method.mode = 'reset'
  c.method.window = 1
  return c
