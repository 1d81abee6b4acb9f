"""DiTTA, warm-up 50% then frozen, from cached flow targets built for that warm-up.

  ttt-jax export configs/ditta_w50.py --out runs/export_w50
  sam2-bridge targets --export-dir runs/export_w50 --out-dir runs/targets_w50
  ttt-jax run configs/ditta_w50.py --out runs/ditta_w50
"""
from ttt_jax.methods.defaults import SYNTHETIC_DITTA, ditta_config


def get_config(arg: str = ""):
  if arg:
    raise ValueError(f"this config has no variant {arg!r}")
  c = ditta_config(warmup=0.5, targets_dir="runs/targets_w50")
  c.update_from_flattened_dict(SYNTHETIC_DITTA)  # lr 1e-4, add-on radius 1 (see defaults.py)
  return c
