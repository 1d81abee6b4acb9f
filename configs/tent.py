"""Tent: entropy minimisation of the norm layers' affine parameters, weights carried.

  ttt-jax run configs/tent.py --out runs/tent      # variants: :demo :quick :tiny
"""
from ttt_jax.methods import defaults


def get_config(arg: str = ""):
  c = defaults.video_config("entropy")
  c.method.name = "tent"
  c.method.mode = "implicit"
  c.method.trainable = defaults.NORM
  c.method.optimizer.lr = 1e-3   # Tent's own lr; the demo keeps it
  return defaults.variant(c, arg)
