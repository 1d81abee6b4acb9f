"""Tent: entropy minimisation of the norm layers' affine parameters, weights carried.

  ttt-jax run configs/tent.py --out runs/tent
"""
from ttt_jax.methods.defaults import video_config


def get_config():
  c = video_config()
  c.method.name = 'tent'
  c.method.objective = 'entropy'
  c.method.mode = 'implicit'
  c.method.trainable = 'norm'
  c.method.lr = 0.001
  return c
