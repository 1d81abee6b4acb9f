"""Ablation: implicit memory only (weights carried, batch from the current frame).

  ttt-jax run configs/implicit_only.py --out runs/implicit_only      # variants: :demo :quick :tiny
"""
from ttt_jax.methods import defaults

# demo lr: `benchmarks/video_ttt.py --sweep-lr` on tuning seeds 5000/6000 (never scored) gave
# online TTT-MAE 48.75 / 48.54 / 48.97 / 49.05 mIoU at lr 1e-4 / 3e-4 / 1e-3 / 3e-3 (main
# task 49.05) with the shipped small model; the reference lr 1e-4 is for large models.
DEMO_LR = 3e-3


def get_config(arg: str = ""):
  c = defaults.video_config("mae")
  c.method.name = "implicit_only"
  c.method.mode = "implicit"
  c.method.window = 1
  return defaults.variant(c, arg, demo_lr=DEMO_LR)
