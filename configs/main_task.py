"""Main task only: the source model, no adaptation.

  ttt-jax run configs/main_task.py --out runs/main_task      # variants: :demo :quick :tiny
"""
from ttt_jax.methods import defaults


def get_config(arg: str = ""):
  c = defaults.video_config("mae")
  c.method.name = "main_task"
  c.method.mode = "none"   # never adapts; kind mae so it runs TTT-MAE's compiled program
  return defaults.variant(c, arg)
