"""Smoke test: a tiny random SegFormer, online TTT-MAE, two short videos
(`configs/online_ttt_mae.py:tiny`).

  ttt-jax run configs/smoke.py --out /tmp/smoke
"""
from ttt_jax.methods import defaults


def get_config(arg: str = ""):
  if arg:
    raise ValueError(f"configs/smoke.py has no variant {arg!r}")
  c = defaults.video_config("mae")
  c.method.name = "online_ttt_mae"
  return defaults.variant(c, "tiny")
