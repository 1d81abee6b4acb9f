"""Predictions drawn over their frames, as one image strip (OpenCV)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ttt_jax.io.files import atomic_write_bytes
from ttt_jax.viz.plots import colourise


def overlay(frame_HW3: np.ndarray, labels_HW: np.ndarray, alpha: float = 0.45) -> np.ndarray:
  """RGB uint8: the frame blended with its labels' colours (weight `alpha`)."""
  colours = colourise(labels_HW)
  return cv2.addWeighted(np.asarray(frame_HW3, np.uint8), 1.0 - alpha, colours, alpha, 0.0)


def write_overlay_strip(path, frames_THW3, labels_THW, count: int = 8) -> Path:
  """Writes `count` evenly spaced frames with their predictions, side by side (JPEG,
  atomically); frames and labels must have the same length and frame size."""
  frames, labels = np.asarray(frames_THW3), np.asarray(labels_THW)
  if frames.shape[:3] != labels.shape:
    raise ValueError(f"{path}: frames {frames.shape[:3]} and labels {labels.shape} do not match")
  idx = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
  strip = np.concatenate([overlay(frames[t], labels[t]) for t in idx], axis=1)
  ok, buf = cv2.imencode(".jpg", strip[..., ::-1])
  if not ok:
    raise ValueError(f"could not encode the overlay strip {path}")
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  return atomic_write_bytes(path, buf.tobytes())
