"""Online TTT-MAE: implicit (weights carried) + explicit (window of 16 frames) memory, one step per frame.

  ttt-jax run configs/online_ttt_mae.py --out runs/online_ttt_mae      # variants: :demo :quick :tiny
"""
from ttt_jax.methods import defaults


def get_config(arg: str = ""):
  c = defaults.video_config("mae")
  c.method.name = "online_ttt_mae"
  c.method.mode = "window"
  c.method.window = 16
  # demo lr 3e-3, chosen on tuning seeds (defaults.TTT_MAE_DEMO_LR)
  return defaults.variant(c, arg, demo_lr=defaults.TTT_MAE_DEMO_LR)
