"""Norm adapt: BatchNorm statistics recomputed on the test window (momentum 0.9), no
gradient step. (The shipped 'builtin' model's GroupNorm heads keep no statistics:
nothing to adapt, as the reference's LN adapt.)

  ttt-jax run configs/norm_adapt.py --out runs/norm_adapt      # variants: :demo :quick :tiny
"""
from ttt_jax.methods import defaults


def get_config(arg: str = ""):
  c = defaults.video_config("norm")
  c.method.name = "norm_adapt"
  c.method.mode = "implicit"
  c.method.trainable = defaults.NONE
  return defaults.variant(c, arg)
