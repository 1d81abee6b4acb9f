"""A synthetic instance-segmentation benchmark (CAST's embedded default), seeded.

Street-like stills: stuff background (sky, ground, a band of buildings, textured
and lit at random) and 4 thing classes drawn from parts, placed in clusters so
they touch and occlude (painted far to near; an instance's mask is what stays
visible, instances under `min_area` pixels are dropped):

  car     a body box, a cabin, two dark wheels
  person  a head disc, a torso, two legs
  sign    a pole with a disc or diamond plate
  crate   a box with a cross brace

Colours overlap between classes (a car may be the colour of a crate), so shape and
parts matter. Splits of one seed: 'labelled' (`labelled_fraction` of the training
images), 'unlabelled' (the rest) and 'val'. Seed 0 is for tuning; seeds >= 1 are
held out.

An `InstanceImage` holds `image_HW3` uint8 RGB, `masks_NHW` bool (disjoint),
`labels_N` int32 class ids, and an `image_id`; the Cityscapes and COCO readers
return the same type.
"""
from __future__ import annotations

import dataclasses
import functools

import cv2
import numpy as np

CLASSES = ("car", "person", "sign", "crate")
NUM_CLASSES = len(CLASSES)
SPLITS = ("labelled", "unlabelled", "val")
SIZES = {"tiny": 56, "demo": 112, "full": 224}


@dataclasses.dataclass(frozen=True)
class InstanceImage:
  image_HW3: np.ndarray
  masks_NHW: np.ndarray
  labels_N: np.ndarray
  image_id: str


def split_counts(num_train: int, labelled_fraction: float) -> dict[str, int]:
  n_lab = max(1, int(round(num_train * labelled_fraction)))
  return {"labelled": n_lab, "unlabelled": num_train - n_lab}


def _colour(rng):
  return tuple(int(c) for c in rng.integers(30, 235, 3))


def _shade(img, mask, rng, amount=25):
  """A linear light gradient over the masked region (painted in place)."""
  h, w = mask.shape
  gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
  a = rng.uniform(0, 2 * np.pi)
  g = (np.cos(a) * gx + np.sin(a) * gy) / max(h, w) * amount
  img[mask] = np.clip(img[mask] + g[mask, None], 0, 255)


def _part_masks(cls: str, cx, cy, s, rng, hw):
  """List of (mask, colour-or-None) parts of one thing at centre (cx, cy), size s."""
  h, w = hw
  parts = []

  def blank():
    return np.zeros((h, w), np.uint8)

  body = _colour(rng)
  if cls == "car":
    m = blank()
    cv2.rectangle(m, (int(cx - s), int(cy - 0.3 * s)), (int(cx + s), int(cy + 0.3 * s)), 1, -1)
    parts.append((m, body))
    m = blank()
    cv2.rectangle(m, (int(cx - 0.5 * s), int(cy - 0.7 * s)), (int(cx + 0.4 * s), int(cy - 0.3 * s)), 1, -1)
    parts.append((m, tuple(int(c * 0.7) for c in body)))
    for dx in (-0.6, 0.6):
      m = blank()
      cv2.circle(m, (int(cx + dx * s), int(cy + 0.35 * s)), max(1, int(0.25 * s)), 1, -1)
      parts.append((m, (20, 20, 25)))
  elif cls == "person":
    m = blank()
    cv2.circle(m, (int(cx), int(cy - 0.8 * s)), max(1, int(0.22 * s)), 1, -1)
    parts.append((m, (int(rng.integers(150, 230)), int(rng.integers(110, 180)), int(rng.integers(90, 150)))))
    m = blank()
    cv2.rectangle(m, (int(cx - 0.25 * s), int(cy - 0.55 * s)), (int(cx + 0.25 * s), int(cy + 0.2 * s)), 1, -1)
    parts.append((m, body))
    for dx in (-0.13, 0.13):
      m = blank()
      cv2.line(m, (int(cx + dx * s), int(cy + 0.2 * s)), (int(cx + 1.6 * dx * s), int(cy + 0.95 * s)), 1,
               max(1, int(0.14 * s)))
      parts.append((m, tuple(int(c * 0.5) for c in _colour(rng))))
  elif cls == "sign":
    m = blank()
    cv2.line(m, (int(cx), int(cy - 0.3 * s)), (int(cx), int(cy + s)), 1, max(1, int(0.1 * s)))
    parts.append((m, (130, 130, 140)))
    m = blank()
    r = max(2, int(0.45 * s))
    if rng.random() < 0.5:
      cv2.circle(m, (int(cx), int(cy - 0.5 * s)), r, 1, -1)
    else:
      pts = np.array([[cx, cy - 0.5 * s - r], [cx + r, cy - 0.5 * s], [cx, cy - 0.5 * s + r],
                      [cx - r, cy - 0.5 * s]], np.int32)
      cv2.fillPoly(m, [pts], 1)
    parts.append((m, body))
  else:  # crate
    m = blank()
    cv2.rectangle(m, (int(cx - 0.55 * s), int(cy - 0.55 * s)), (int(cx + 0.55 * s), int(cy + 0.55 * s)), 1, -1)
    parts.append((m, body))
    m = blank()
    t = max(1, int(0.1 * s))
    cv2.line(m, (int(cx - 0.5 * s), int(cy - 0.5 * s)), (int(cx + 0.5 * s), int(cy + 0.5 * s)), 1, t)
    cv2.line(m, (int(cx - 0.5 * s), int(cy + 0.5 * s)), (int(cx + 0.5 * s), int(cy - 0.5 * s)), 1, t)
    parts.append((m, tuple(int(c * 0.6) for c in body)))
  return parts


def _background(rng, size):
  h = w = size
  img = np.zeros((h, w, 3), np.float32)
  horizon = int(h * rng.uniform(0.3, 0.5))
  img[:horizon] = _colour(rng)
  img[horizon:] = tuple(int(c * 0.6) for c in _colour(rng))
  # A band of buildings along the horizon.
  x = 0
  while x < w:
    bw, bh = int(rng.integers(size // 8, size // 3)), int(rng.integers(size // 10, horizon + 1))
    cv2.rectangle(img, (x, horizon - bh), (x + bw, horizon), tuple(float(c) for c in _colour(rng)), -1)
    x += bw
  img += rng.normal(0, 8, (h, w, 1)).astype(np.float32)   # texture
  return img, horizon


@functools.lru_cache(maxsize=4096)
def make_image(seed: int, split: str, index: int, size: str = "demo", min_area: int | None = None) -> InstanceImage:
  """One image of a split (deterministic in its arguments; arrays read-only)."""
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
  if size not in SIZES:
    raise ValueError(f"unknown image size {size!r}; expected one of {sorted(SIZES)}")
  px = SIZES[size]
  min_area = min_area if min_area is not None else default_min_area(px)
  rng = np.random.default_rng([seed, SPLITS.index(split), index])
  img, horizon = _background(rng, px)
  inst = np.zeros((px, px), np.int32)
  labels = []
  n_clusters = int(rng.integers(2, 4))
  things = []
  for _ in range(n_clusters):
    ccx, ccy = rng.uniform(0.15, 0.85) * px, rng.uniform(horizon / px + 0.1, 0.9) * px
    for _ in range(int(rng.integers(2, 6))):
      cls = int(rng.integers(NUM_CLASSES))
      y = ccy + rng.normal(0, 0.08) * px
      s = px * rng.uniform(0.08, 0.16) * (0.6 + 0.8 * y / px)   # nearer (lower) is larger
      things.append((y, cls, ccx + rng.normal(0, 0.1) * px, s))
  for y, cls, x, s in sorted(things):   # far (high) first, so nearer ones occlude
    k = len(labels) + 1
    for m, col in _part_masks(CLASSES[cls], x, y, s, rng, (px, px)):
      mb = m.astype(bool)
      img[mb] = col
      inst[mb] = k
    region = inst == k
    if region.any():
      _shade(img, region, rng)
    labels.append(cls)
  img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
  return painted_instances(img, inst, labels, min_area, f"{split}-s{seed}-{index:05d}")


def default_min_area(px: int) -> int:
  """Pixels an instance keeps at least: half a 14-pixel patch's worth at `px` a side."""
  return max(4, (px // 14) ** 2 // 2)


def painted_instances(image_HW3, inst_HW, labels, min_area: int, image_id: str) -> InstanceImage:
  """The `InstanceImage` of a painted image: instance k (1-based in `inst_HW`, class
  `labels[k - 1]`) is what stayed visible of it; those under `min_area` pixels are
  dropped. Arrays read-only (the generators cache their images)."""
  masks, keep = [], []
  for k, cls in enumerate(labels, start=1):
    m = inst_HW == k
    if m.sum() >= min_area:
      masks.append(m)
      keep.append(cls)
  masks_NHW = np.stack(masks) if masks else np.zeros((0, *inst_HW.shape), bool)
  out = InstanceImage(image_HW3, masks_NHW, np.asarray(keep, np.int32), image_id)
  for a in (out.image_HW3, out.masks_NHW, out.labels_N):
    a.flags.writeable = False
  return out


def make_split(seed: int, split: str, count: int, size: str = "demo") -> list[InstanceImage]:
  return [make_image(seed, split, i, size) for i in range(count)]
