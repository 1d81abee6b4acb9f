"""VSPW as released: `VSPW_480p/{train,val,test}.txt`, `data/<video>/origin/*.jpg`,
`data/<video>/mask/*.png`.

Labels: raw - 1; raw 0 (void) and 255 become 255 (ignore), so 124 classes 0..123.
Frames are rescaled to fit 853 x 480 and padded to a multiple of 32 (labels padded
with 255), as the DiTTA reference does; `size=(H, W)` instead resizes to a fixed
size (for small CPU runs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ttt_jax.data.image_io import fit_and_pad, read_png, read_rgb, resize_pair

NUM_CLASSES = 124


def map_labels(raw_HW: np.ndarray) -> np.ndarray:
  raw = raw_HW.astype(np.int32)
  out = raw - 1
  out[(raw == 0) | (raw == 255)] = 255
  return out.astype(np.uint8)


def list_videos(root, split: str = "val") -> list[str]:
  root = Path(root)
  f = root / f"{split}.txt"
  if not f.is_file():
    raise FileNotFoundError(f"{root} is not a VSPW root: {f} is missing")
  return [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]


def read_video(root, video: str, *, max_frames: int | None = None, size=None):
  """`(frames_THW3 uint8, labels_THW uint8)` of one video, frames sorted by name."""
  d = Path(root) / "data" / video
  imgs = sorted((d / "origin").glob("*.jpg"))
  if not imgs:
    raise ValueError(f"VSPW video {video}: no frames in {d / 'origin'}")
  imgs = imgs[:max_frames] if max_frames else imgs
  frames, labels = [], []
  for p in imgs:
    m = d / "mask" / (p.stem + ".png")
    if not m.is_file():
      raise ValueError(f"VSPW video {video}: frame {p.name} has no label {m}")
    f, lab = read_rgb(p), map_labels(read_png(m))
    if lab.shape != f.shape[:2]:
      raise ValueError(f"VSPW video {video}: label {m} is {lab.shape}, frame is {f.shape[:2]}")
    f, lab = resize_pair(f, lab, size) if size and all(size) else fit_and_pad(f, lab)
    frames.append(f)
    labels.append(lab)
  return np.stack(frames), np.stack(labels)


def iter_videos(root, *, split="val", limit=None, max_frames=None, size=None) -> Iterator:
  for v in list_videos(root, split)[:limit]:
    yield (v, *read_video(root, v, max_frames=max_frames, size=size))
