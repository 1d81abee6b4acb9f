"""Point-cloud TTT: ttt_kd (method.kind='ttt_kd', stride 0); see ttt_jax/methods/ttt_kd.py.

  ttt-jax run configs/ttt_kd.py --out /tmp/ttt_kd
  ttt-jax run configs/ttt_kd.py data.dataset=home --out /tmp/ttt_kd_ood   # out of distribution
"""
from ttt_jax.methods.point_defaults import point_config, point_variant


def get_config(arg: str = ""):
  return point_variant(point_config("ttt_kd", name="ttt_kd", stride=0), arg)
