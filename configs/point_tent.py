"""Point-cloud TTT: point_tent (method.kind='entropy', stride 0); see ttt_jax/methods/ttt_kd.py.

  ttt-jax run configs/point_tent.py --out /tmp/point_tent
  ttt-jax run configs/point_tent.py data.dataset=home --out /tmp/point_tent_ood   # out of distribution
"""
from ttt_jax.methods.point_defaults import point_config, point_variant


def get_config(arg: str = ""):
  return point_variant(point_config("entropy", name="point_tent", stride=0), arg)
