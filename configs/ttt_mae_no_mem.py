"""TTT-MAE, no memory: reset to the source weights every frame, train on the current frame only.

  ttt-jax run configs/ttt_mae_no_mem.py --out runs/ttt_mae_no_mem      # variants: :demo :quick :tiny
"""
from ttt_jax.methods import defaults

# demo lr: `benchmarks/video_ttt.py --sweep-lr` on tuning seeds 5000/6000 (never scored) gave
# online TTT-MAE 48.75 / 48.54 / 48.97 / 49.05 mIoU at lr 1e-4 / 3e-4 / 1e-3 / 3e-3 (main
# task 49.05) with the shipped small model; the reference lr 1e-4 is for large models.
DEMO_LR = 3e-3


def get_config(arg: str = ""):
  c = defaults.video_config("mae")
  c.method.name = "ttt_mae_no_mem"
  c.method.mode = "reset"
  c.method.window = 1
  return defaults.variant(c, arg, demo_lr=DEMO_LR)
