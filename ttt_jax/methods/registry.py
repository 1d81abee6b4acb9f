"""The methods a config can name (`config.method.kind`), each a `base.Method`.

A new method registers here; the runner looks it up and knows nothing else of it.
"""
from __future__ import annotations

from ttt_jax.methods import ditta, video_ttt
from ttt_jax.methods.base import Method

_VIDEO = video_ttt.VideoTTT()
METHODS: dict[str, Method] = {
    "none": _VIDEO, "mae": _VIDEO, "entropy": _VIDEO, "self_train": _VIDEO, "norm": _VIDEO,
    "ditta": ditta.DiTTA(), "cotta": ditta.CoTTA(), "zero_shot": ditta.ZeroShot(),
}


def get_method(kind: str) -> Method:
  if kind not in METHODS:
    raise ValueError(f"unknown method kind {kind!r} (config.method.kind); expected one of {sorted(METHODS)}")
  return METHODS[kind]
