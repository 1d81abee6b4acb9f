"""Reading frames and label PNGs, resizing and padding (OpenCV)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_rgb(path) -> np.ndarray:
  img = cv2.imread(str(path), cv2.IMREAD_COLOR)
  if img is None:
    raise ValueError(f"cannot read image {path} (missing or not an image)")
  return np.ascontiguousarray(img[..., ::-1])


def read_png(path, flags=cv2.IMREAD_UNCHANGED) -> np.ndarray:
  img = cv2.imread(str(path), flags)
  if img is None:
    raise ValueError(f"cannot read PNG {path} (missing or not an image)")
  return img


def write_label_png(path, labels_HW) -> None:
  lab = np.asarray(labels_HW)
  if lab.min() < 0 or lab.max() > 255:
    raise ValueError(f"{path}: labels must be in 0..255 to be stored as 8-bit PNG")
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  if not cv2.imwrite(str(path), lab.astype(np.uint8)):
    raise ValueError(f"could not write {path}")


def resize_pair(frame_HW3, label_HW, size):
  """Resizes a frame (area) and its labels (nearest) to `size = (H, W)`."""
  h, w = size
  f = cv2.resize(frame_HW3, (w, h), interpolation=cv2.INTER_AREA)
  lab = cv2.resize(label_HW, (w, h), interpolation=cv2.INTER_NEAREST)
  return f, lab


def fit_and_pad(frame_HW3, label_HW, max_hw=(480, 853), multiple=32, ignore=255):
  """Rescales to fit `max_hw` (keeping aspect), pads to a multiple of `multiple`."""
  h, w = label_HW.shape
  s = min(max_hw[0] / h, max_hw[1] / w)
  nh, nw = int(round(h * s)), int(round(w * s))
  f, lab = resize_pair(frame_HW3, label_HW, (nh, nw))
  ph, pw = -nh % multiple, -nw % multiple
  f = np.pad(f, ((0, ph), (0, pw), (0, 0)))
  lab = np.pad(lab, ((0, ph), (0, pw)), constant_values=ignore)
  return f, lab
