"""Norm adapt: BatchNorm statistics recomputed on the test window (momentum 0.9), no gradient step.

  ttt-jax run configs/norm_adapt.py --out runs/norm_adapt
"""
from ttt_jax.methods.defaults import video_config


def get_config():
  c = video_config()
  c.method.name = 'norm_adapt'
  c.method.objective = 'norm'
  c.method.mode = 'implicit'
  c.method.trainable = 'none'
  return c
