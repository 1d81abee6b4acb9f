"""CoTTA (EMA teacher, augmentation-averaged pseudo-labels, stochastic restore),
online on every frame, scored after the 10% warm-up like DiTTA.

  ttt-jax run configs/ditta_cotta.py --out runs/ditta_cotta
"""
from ttt_jax.methods.defaults import ditta_config


def get_config(arg: str = ""):
  if arg:
    raise ValueError(f"this config has no variant {arg!r}")
  return ditta_config(warmup=0.1, kind="cotta", name="cotta")
