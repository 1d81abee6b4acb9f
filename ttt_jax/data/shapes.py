"""Generic shapes: the broad, fully labelled instance data CAST's embedded benchmark
pretrains its "foundation" models on (`configs/cast.py:foundation`).

The paper starts teacher and student from foundation encoders (DINOv2) that have
seen far more than the target data. Here a model of the same family is first trained
on this other distribution: textured scenes of many touching and occluding shapes,
4 classes that are not the benchmark's (ellipse, box, triangle, ring), random
colours, stripes and checks, light gradients, cluttered stuff backgrounds. It learns
objectness, boundaries and instance separation, not cars or people.

Images are `InstanceImage`s, like `data.instances`; seeds are disjoint from the
benchmark's by construction (another generator entirely), so pretraining on any seed
leaks nothing of the benchmark's images.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from ttt_jax.data.instances import SIZES, InstanceImage, default_min_area, painted_instances

CLASSES = ("ellipse", "box", "triangle", "ring")


def _colour(rng):
  return tuple(float(c) for c in rng.integers(0, 256, 3))


def _texture(rng, hw):
  """A random fill: flat, stripes or checks, in two colours (float H x W x 3)."""
  h, w = hw
  a, b = np.array(_colour(rng)), np.array(_colour(rng))
  kind = rng.integers(3)
  if kind == 0:
    return np.broadcast_to(a, (h, w, 3)).astype(np.float32)
  gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
  period = rng.uniform(3, 10)
  if kind == 1:
    t = np.cos(rng.uniform(0, np.pi)) * gx + np.sin(rng.uniform(0, np.pi)) * gy
    sel = (t // period) % 2 == 0
  else:
    sel = ((gx // period) + (gy // period)) % 2 == 0
  return np.where(sel[..., None], a, 0.5 * (a + b)).astype(np.float32)


def _shape_mask(cls: int, cx, cy, s, rng, hw) -> np.ndarray:
  m = np.zeros(hw, np.uint8)
  ang = float(rng.uniform(0, 180))
  if cls == 0:      # ellipse
    cv2.ellipse(m, (int(cx), int(cy)), (max(2, int(s)), max(2, int(s * rng.uniform(0.4, 1.0)))), ang, 0, 360, 1, -1)
  elif cls == 1:    # box, rotated
    box = cv2.boxPoints(((cx, cy), (2 * s, 2 * s * rng.uniform(0.4, 1.0)), ang))
    cv2.fillPoly(m, [box.astype(np.int32)], 1)
  elif cls == 2:    # triangle
    t = np.deg2rad(ang) + np.array([0.0, 2.1, 4.2]) + rng.uniform(-0.3, 0.3, 3)
    pts = np.stack([cx + s * np.cos(t), cy + s * np.sin(t)], 1).astype(np.int32)
    cv2.fillPoly(m, [pts], 1)
  else:             # ring
    cv2.circle(m, (int(cx), int(cy)), max(3, int(s)), 1, max(2, int(s * rng.uniform(0.3, 0.5))))
  return m.astype(bool)


@functools.lru_cache(maxsize=4096)
def make_shapes_image(seed: int, index: int, size: str = "demo") -> InstanceImage:
  """One image (deterministic in its arguments; arrays read-only)."""
  if size not in SIZES:
    raise ValueError(f"unknown image size {size!r}; expected one of {sorted(SIZES)}")
  px = SIZES[size]
  hw = (px, px)
  rng = np.random.default_rng([seed, 7, index])
  img = _texture(rng, hw)
  for _ in range(int(rng.integers(2, 6))):   # stuff: large background regions
    m = _shape_mask(int(rng.integers(2)), *rng.uniform(0, px, 2), px * rng.uniform(0.3, 0.7), rng, hw)
    img[m] = _texture(rng, hw)[m]
  inst = np.zeros(hw, np.int32)
  labels = []
  for _ in range(int(rng.integers(2, 5))):   # clusters, so instances touch and occlude
    ccx, ccy = rng.uniform(0.15, 0.85, 2) * px
    for _ in range(int(rng.integers(1, 5))):
      cls = int(rng.integers(len(CLASSES)))
      s = px * rng.uniform(0.06, 0.2)
      m = _shape_mask(cls, ccx + rng.normal(0, 0.1) * px, ccy + rng.normal(0, 0.1) * px, s, rng, hw)
      if not m.any():
        continue
      img[m] = _texture(rng, hw)[m]
      gy, gx = np.nonzero(m)   # a light gradient across the shape
      a = rng.uniform(0, 2 * np.pi)
      img[gy, gx] += ((np.cos(a) * gx + np.sin(a) * gy) / px * 40)[:, None]
      labels.append(cls)
      inst[m] = len(labels)
  img = np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)
  return painted_instances(img, inst, labels, default_min_area(px), f"shapes-s{seed}-{index:05d}")
