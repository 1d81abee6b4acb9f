"""Point-cloud TTT: ttt_kd_o (method.kind='ttt_kd', stride 5); see ttt_jax/methods/ttt_kd.py.

  ttt-jax run configs/ttt_kd_o.py --out /tmp/ttt_kd_o
  ttt-jax run configs/ttt_kd_o.py data.dataset=home --out /tmp/ttt_kd_o_ood   # out of distribution
"""
from ttt_jax.methods.point_defaults import point_config, point_variant


def get_config(arg: str = ""):
  return point_variant(point_config("ttt_kd", name="ttt_kd_o", stride=5), arg)
