"""Ablation: explicit memory only (window of 16 frames, weights reset every frame).

  ttt-jax run configs/explicit_only.py --out runs/explicit_only      # variants: :demo :quick :tiny
"""
from ttt_jax.methods import defaults


def get_config(arg: str = ""):
  c = defaults.video_config("mae")
  c.method.name = "explicit_only"
  c.method.mode = "explicit"
  c.method.window = 16
  # demo lr 3e-3, chosen on tuning seeds (defaults.TTT_MAE_DEMO_LR)
  return defaults.variant(c, arg, demo_lr=defaults.TTT_MAE_DEMO_LR)
