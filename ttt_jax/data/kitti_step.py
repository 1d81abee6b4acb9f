"""KITTI-STEP as released (DeepLab2 layout):

    <root>/video_sequence/{train,val}/<seq:06d>_<frame:06d>_leftImg8bit.png
    <root>/panoptic_maps/{train,val}/<seq:04d>/<frame:06d>.png

Panoptic PNGs hold the semantic id (Cityscapes train ids 0..18, 255 void) in the
red channel and the instance id as green * 256 + blue.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Iterator

import numpy as np

from ttt_jax.data.image_io import read_png, read_rgb, resize_pair

NUM_CLASSES = 19
_NAME = re.compile(r"(\d{6})_(\d{6})_leftImg8bit\.png$")


def decode_panoptic(png_BGR: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """`(semantic_HW uint8, instance_HW int32)` from an OpenCV-read (BGR) panoptic PNG."""
  b, g, r = (png_BGR[..., i].astype(np.int32) for i in range(3))
  return r.astype(np.uint8), g * 256 + b


def list_sequences(root, split="val") -> dict[str, list[Path]]:
  d = Path(root) / "video_sequence" / split
  if not d.is_dir():
    raise FileNotFoundError(f"{root} is not a KITTI-STEP root: {d} is missing")
  seqs = defaultdict(list)
  for p in sorted(d.iterdir()):
    m = _NAME.search(p.name)
    if m:
      seqs[m.group(1)].append(p)
  if not seqs:
    raise ValueError(f"no *_leftImg8bit.png frames in {d}")
  return dict(seqs)


def read_sequence(root, split, seq: str, frames_paths, *, max_frames=None, size=None):
  frames, labels = [], []
  for p in frames_paths[:max_frames] if max_frames else frames_paths:
    frame_id = _NAME.search(p.name).group(2)
    m = Path(root) / "panoptic_maps" / split / f"{int(seq):04d}" / f"{frame_id}.png"
    f = read_rgb(p)
    sem, _ = decode_panoptic(read_png(m))
    if sem.shape != f.shape[:2]:
      raise ValueError(f"KITTI-STEP {seq}: label {m} is {sem.shape}, frame {p} is {f.shape[:2]}")
    if size and all(size):
      f, sem = resize_pair(f, sem, size)
    frames.append(f)
    labels.append(sem)
  return np.stack(frames), np.stack(labels)


def iter_videos(root, *, split="val", limit=None, max_frames=None, size=None) -> Iterator:
  for seq, paths in list(list_sequences(root, split).items())[:limit]:
    yield (f"kitti_{seq}", *read_sequence(root, split, seq, paths, max_frames=max_frames, size=size))
