"""Point-cloud TTT: point_source (method.kind='none', stride 0); see ttt_jax/methods/ttt_kd.py.

  ttt-jax run configs/point_source.py --out /tmp/point_source
  ttt-jax run configs/point_source.py data.dataset=home --out /tmp/point_source_ood   # out of distribution
"""
from ttt_jax.methods.point_defaults import point_config, point_variant


def get_config(arg: str = ""):
  return point_variant(point_config("none", name="point_source", stride=0), arg)
