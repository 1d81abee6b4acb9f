"""Online TTT-MAE: implicit (weights carried) + explicit (window of 16 frames) memory, one step per frame.

  ttt-jax run configs/online_ttt_mae.py --out runs/online_ttt_mae
"""
from ttt_jax.methods.defaults import video_config


def get_config():
  c = video_config()
  c.method.name = 'online_ttt_mae'
  c.method.objective = 'mae'
  c.method.mode = 'window'
  c.method.window = 16
  return c
