"""Offline TTT-MAE on all frames: every frame in memory, one step per frame in any
order after seeing the video, then predict frozen.

  ttt-jax run configs/offline.py --out runs/offline      # variants: :demo :quick :tiny
"""
from ttt_jax.methods import defaults


def get_config(arg: str = ""):
  c = defaults.video_config("mae")
  c.method.name = "offline"
  c.method.mode = "offline"
  # demo lr 3e-3, chosen on tuning seeds (defaults.TTT_MAE_DEMO_LR)
  return defaults.variant(c, arg, demo_lr=defaults.TTT_MAE_DEMO_LR, offline_iters_per_frame=1)
