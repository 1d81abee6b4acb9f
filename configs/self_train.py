"""Self-training: confident clean-view predictions supervise an 80%-masked view, weights carried.

  ttt-jax run configs/self_train.py --out runs/self_train
"""
from ttt_jax.methods.defaults import video_config


def get_config():
  c = video_config()
  c.method.name = 'self_train'
  c.method.objective = 'self_train'
  c.method.mode = 'implicit'
  return c
