"""The methods a config can name (`config.method.kind`), each a `base.Method`.

A new method registers here; the runner looks it up and knows nothing else of it.
"""
from __future__ import annotations

from ttt_jax.methods import ditta, ttt_kd, video_ttt
from ttt_jax.methods.base import Method

_VIDEO = video_ttt.VideoTTT()
METHODS: dict[str, Method] = {
    "none": _VIDEO, "mae": _VIDEO, "entropy": _VIDEO, "self_train": _VIDEO, "norm": _VIDEO,
    "ditta": ditta.DiTTA(), "cotta": ditta.CoTTA(), "zero_shot": ditta.ZeroShot(),
}
_POINTS = ttt_kd.TTTKD()
# Point-cloud runs (config.model.arch 'point_seg') look their kind up here.
POINT_METHODS: dict[str, Method] = {k: _POINTS for k in ttt_kd.KINDS}


def get_method(kind: str, points: bool = False) -> Method:
  table = POINT_METHODS if points else METHODS
  if kind not in table:
    raise ValueError(f"unknown {'point ' if points else ''}method kind {kind!r} (config.method.kind); "
                     f"expected one of {sorted(table)}")
  return table[kind]
