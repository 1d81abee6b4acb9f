"""Point-cloud TTT: point_norm (method.kind='norm', stride 0); see ttt_jax/methods/ttt_kd.py.

  ttt-jax run configs/point_norm.py --out /tmp/point_norm
  ttt-jax run configs/point_norm.py data.dataset=home --out /tmp/point_norm_ood   # out of distribution
"""
from ttt_jax.methods.point_defaults import point_config, point_variant


def get_config(arg: str = ""):
  return point_variant(point_config("norm", name="point_norm", stride=0), arg)
