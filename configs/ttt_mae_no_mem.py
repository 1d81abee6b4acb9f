"""TTT-MAE, no memory: reset to the source weights every frame, train on the current frame only.

  ttt-jax run configs/ttt_mae_no_mem.py --out runs/ttt_mae_no_mem      # variants: :demo :quick :tiny
"""
from ttt_jax.methods import defaults


def get_config(arg: str = ""):
  c = defaults.video_config("mae")
  c.method.name = "ttt_mae_no_mem"
  c.method.mode = "reset"
  c.method.window = 1
  # demo lr 3e-3, chosen on tuning seeds (defaults.TTT_MAE_DEMO_LR)
  return defaults.variant(c, arg, demo_lr=defaults.TTT_MAE_DEMO_LR)
