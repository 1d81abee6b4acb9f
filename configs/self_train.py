"""Self-training: confident clean-view predictions supervise an 80%-masked view, weights carried.

  ttt-jax run configs/self_train.py --out runs/self_train      # variants: :demo :quick :tiny
"""
from ttt_jax.methods import defaults

# demo lr: kept at 1e-3 when TTT-MAE's was re-chosen (see online_ttt_mae.py).
DEMO_LR = 1e-3


def get_config(arg: str = ""):
  c = defaults.video_config("self_train")
  c.method.name = "self_train"
  c.method.mode = "implicit"
  return defaults.variant(c, arg, demo_lr=DEMO_LR)
