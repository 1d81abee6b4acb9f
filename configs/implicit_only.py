"""Ablation: implicit memory only (weights carried, batch from the current frame).

  ttt-jax run configs/implicit_only.py --out runs/implicit_only      # variants: :demo :quick :tiny
"""
from ttt_jax.methods import defaults


def get_config(arg: str = ""):
  c = defaults.video_config("mae")
  c.method.name = "implicit_only"
  c.method.mode = "implicit"
  c.method.window = 1
  # demo lr 3e-3, chosen on tuning seeds (defaults.TTT_MAE_DEMO_LR)
  return defaults.variant(c, arg, demo_lr=defaults.TTT_MAE_DEMO_LR)
