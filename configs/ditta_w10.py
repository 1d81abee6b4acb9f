"""DiTTA, warm-up 10% then frozen, on the synthetic benchmark, from cached flow targets.

  ttt-jax export configs/ditta_w10.py --out runs/export_w10
  sam2-bridge targets --export-dir runs/export_w10 --out-dir runs/targets_w10
  ttt-jax run configs/ditta_w10.py --out runs/ditta_w10
"""
from ttt_jax.methods.defaults import SYNTHETIC_DITTA, ditta_config


def get_config(arg: str = ""):
  if arg:
    raise ValueError(f"this config has no variant {arg!r}")
  c = ditta_config(warmup=0.1, targets_dir="runs/targets_w10")
  c.update_from_flattened_dict(SYNTHETIC_DITTA)  # lr 1e-4, add-on radius 1 (see defaults.py)
  return c
