"""Validation of video arrays, done by the data side before any long work."""
from __future__ import annotations

import numpy as np


def check_frames(frames_THWC, name: str = "frames", frame_shape=None) -> np.ndarray:
  """Validates a video array (`T, H, W, 3`, uint8 or finite float); returns it as
  numpy. Raises ValueError naming `name` and what was expected."""
  a = np.asarray(frames_THWC)
  if a.ndim != 4:
    raise ValueError(f"{name}: expected T x H x W x C frames (rank 4), got shape {a.shape}")
  if a.shape[0] == 0:
    raise ValueError(f"{name}: the video is empty (0 frames)")
  if a.shape[-1] != 3:
    raise ValueError(f"{name}: expected 3 colour channels (RGB), got shape {a.shape}")
  if frame_shape is not None and tuple(a.shape[1:]) != tuple(frame_shape):
    raise ValueError(f"{name}: expected frames of shape {tuple(frame_shape)}, got {a.shape[1:]}")
  if a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
    raise ValueError(f"{name}: expected uint8 or float frames, got dtype {a.dtype}")
  if np.issubdtype(a.dtype, np.floating):
    bad = ~np.isfinite(a).reshape(a.shape[0], -1).all(axis=1)
    if bad.any():
      raise ValueError(f"{name}: frame(s) {np.flatnonzero(bad)[:10].tolist()} contain NaN or "
                       "infinite values")
  return a
