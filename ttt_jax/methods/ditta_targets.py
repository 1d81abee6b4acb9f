"""From cached object masks to DiTTA's per-pixel targets (numpy, once per video).

Class score of object o for class c (METHODS.md): mean ISS reliability over o's
pixels of class c x (share of o's pixels with class c)^0.3 x (1 - video-level
share of c)^0.8. Each object takes its argmax class; objects are painted from
lowest to highest score, so the best object wins where masks overlap. As the
reference (ditta/sam2_target.py `_render`, `target_to_label`), every object is
painted into the object map, those of score 0 too (they take part in the mask
contrast), while the class map gives them IGNORE; pixels outside every object are
IGNORE in both. `fill_with_iss` then gives the class map's IGNORE pixels the ISS
prediction (Eq. 5).
"""
from __future__ import annotations

import numpy as np

IGNORE = 255


def reliability_np(probs_THWC):
  p = np.clip(probs_THWC.astype(np.float64), 1e-12, 1.0)
  e = -(p * np.log(p)).sum(-1)
  m = e.max(axis=(1, 2), keepdims=True)
  return np.where(m > 0, 1.0 - e / np.where(m > 0, m, 1.0), 1.0)


def class_scores(masks_TNHW: np.ndarray, probs_THWC: np.ndarray) -> np.ndarray:
  """`N, C` float32 scores (0 where an object has no pixel of a class)."""
  t, n = masks_TNHW.shape[:2]
  c = probs_THWC.shape[-1]
  pred = probs_THWC.argmax(-1)
  rel = reliability_np(probs_THWC)
  share = np.bincount(pred.reshape(-1), minlength=c) / pred.size
  out = np.zeros((n, c), np.float32)
  for o in range(n):
    m = masks_TNHW[:, o]
    tot = m.sum()
    if tot == 0:
      continue
    cls = pred[m]
    cnt = np.bincount(cls, minlength=c)
    rsum = np.bincount(cls, weights=rel[m], minlength=c)
    has = cnt > 0
    mean_r = np.where(has, rsum / np.maximum(cnt, 1), 0.0)
    out[o] = np.where(has, mean_r * (cnt / tot) ** 0.3 * (1.0 - share) ** 0.8, 0.0)
  return out


def paint(masks_TNHW: np.ndarray, classes_N: np.ndarray, scores_N: np.ndarray):
  """`(class map, object map)`, each uint8 `T, H, W`, IGNORE where no object."""
  t, n, h, w = masks_TNHW.shape
  if n > IGNORE:
    raise ValueError(f"{n} objects cannot be painted into uint8 maps (at most {IGNORE})")
  cls_map = np.full((t, h, w), IGNORE, np.uint8)
  obj_map = np.full((t, h, w), IGNORE, np.uint8)
  for o in np.argsort(scores_N, kind="stable"):
    m = masks_TNHW[:, o]
    cls_map[m] = classes_N[o] if scores_N[o] > 0 else IGNORE
    obj_map[m] = o
  return cls_map, obj_map


def fill_with_iss(cls_THW: np.ndarray, probs_THWC: np.ndarray) -> np.ndarray:
  """The distillation label: the class map where it has a class, else the ISS argmax."""
  return np.where(cls_THW == IGNORE, probs_THWC.argmax(-1), cls_THW).astype(np.uint8)


def distillation_targets(masks_TNHW, probs_THWC):
  """Class map, object map (uint8 `T, H, W`) and the `N, C` scores."""
  if masks_TNHW.shape[0] != probs_THWC.shape[0] or masks_TNHW.shape[2:] != probs_THWC.shape[1:3]:
    raise ValueError(f"cached masks {masks_TNHW.shape} do not match the ISS probabilities "
                     f"{probs_THWC.shape} (frames and size must agree)")
  s = class_scores(masks_TNHW, probs_THWC)
  cls_map, obj_map = paint(masks_TNHW, s.argmax(-1), s.max(-1))
  return cls_map, obj_map, s


def zero_shot_paint(masks_TNHW, prompt_classes_N, prompt_scores_N):
  """Zero-shot refinement: every object painted with its prompt's class, low to high score."""
  return paint(masks_TNHW, np.asarray(prompt_classes_N), np.asarray(prompt_scores_N) + 1e-6)[0]
