"""How far adaptation moved the weights: relative drift per layer group.

Drift of a group = ||theta_end - theta_start|| / ||theta_start|| over all of the
group's trained leaves (Frobenius norms), where theta_start is the state's anchor
(the weights the video started from). Groups: each encoder stage
(`patch_embed{i}`, `patch_norm{i}`, `block{i}_*`, `norm{i}` -> `encoder.stage{i}`)
and each other top-level module (`decode_head`, `recon`, `ditta_addon`, ...).
"""
from __future__ import annotations

import re

import numpy as np
from flax import traverse_util


def layer_group(path: tuple[str, ...]) -> str:
  """The group of a parameter path such as `('params', 'encoder', 'block2_1', 'mlp', ...)`."""
  keys = path[1:] if path and path[0] == "params" else path
  if keys and keys[0] == "encoder" and len(keys) > 1:
    m = re.search(r"(\d+)(?:_\d+)?$", keys[1])
    return f"encoder.stage{m.group(1)}" if m else "encoder"
  return keys[0] if keys else "?"


def layer_group_drift(trainable, anchor) -> dict[str, float]:
  """`{group: relative drift}` of `trainable` against `anchor` (same tree)."""
  now = traverse_util.flatten_dict(trainable)
  ref = traverse_util.flatten_dict(anchor)
  diff_sq: dict[str, float] = {}
  ref_sq: dict[str, float] = {}
  for k, v in now.items():
    g = layer_group(k)
    a = np.asarray(ref[k], np.float64)
    diff_sq[g] = diff_sq.get(g, 0.0) + float(np.sum((np.asarray(v, np.float64) - a) ** 2))
    ref_sq[g] = ref_sq.get(g, 0.0) + float(np.sum(a ** 2))
  return {g: (diff_sq[g] ** 0.5) / max(ref_sq[g] ** 0.5, 1e-12) for g in sorted(diff_sq)}
