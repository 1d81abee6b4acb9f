"""The ISS model per frame under DiTTA's protocol (scored after the 10% warm-up).

  ttt-jax run configs/ditta_iss.py --out runs/ditta_iss
"""
from ttt_jax.methods.defaults import ditta_config


def get_config(arg: str = ""):
  if arg:
    raise ValueError(f"this config has no variant {arg!r}")
  return ditta_config(warmup=0.1, kind="none", name="iss")
