"""Your own video, without labels: a folder of images, a video file, or a folder of
either (`data.name=frames`, `data.root=PATH`).

Every frame is fit into `height x width` keeping its aspect ratio (area
interpolation) and padded with black at the bottom and right to exactly that
size, as the VSPW reader fits and pads, so one compiled program serves every
video of a run. Frames of a folder are taken in file-name order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ttt_jax.data.image_io import read_rgb

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def fit_into(frame_HW3: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
  """`frame` scaled to fit `size_hw` (aspect kept) and zero-padded to exactly it."""
  th, tw = size_hw
  h, w = frame_HW3.shape[:2]
  s = min(th / h, tw / w)
  nh, nw = max(1, min(th, int(round(h * s)))), max(1, min(tw, int(round(w * s))))
  f = cv2.resize(frame_HW3, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
  return np.pad(f, ((0, th - nh), (0, tw - nw), (0, 0)))


def _images(folder: Path) -> list[Path]:
  return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def read_image_folder(folder, *, max_frames: int | None = None) -> np.ndarray:
  """`T, H, W, 3` uint8 frames of a folder of images (all of one size)."""
  folder = Path(folder)
  paths = _images(folder)[:max_frames or None]
  if not paths:
    raise ValueError(f"frames folder {folder}: no images ({', '.join(IMAGE_EXTS)})")
  frames = [read_rgb(paths[0])]
  for p in paths[1:]:
    f = read_rgb(p)
    if f.shape != frames[0].shape:
      raise ValueError(f"frames folder {folder}: {p.name} is {f.shape[0]} x {f.shape[1]} but the "
                       f"first frame {paths[0].name} is {frames[0].shape[0]} x {frames[0].shape[1]}; "
                       "a video's frames must share one size")
    frames.append(f)
  return np.stack(frames)


def read_video_file(path, *, max_frames: int | None = None) -> np.ndarray:
  """`T, H, W, 3` uint8 RGB frames decoded by OpenCV."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"video file {path} does not exist")
  cap = cv2.VideoCapture(str(path))
  frames = []
  try:
    while cap.isOpened() and (not max_frames or len(frames) < max_frames):
      ok, bgr = cap.read()
      if not ok:
        break
      frames.append(np.ascontiguousarray(bgr[..., ::-1]))
  finally:
    cap.release()
  if not frames:
    raise ValueError(f"video file {path}: no frame could be decoded (empty, or not a video)")
  return np.stack(frames)


def list_videos(root) -> list[Path]:
  """The videos under `root`: itself (a video file or a folder of images), or each
  video file and image folder directly inside it."""
  root = Path(root)
  if not root.exists():
    raise FileNotFoundError(f"data.root {root} does not exist (a video file or a folder of frames)")
  if root.is_file():
    return [root]
  if _images(root):
    return [root]
  found = sorted(p for p in root.iterdir()
                 if (p.is_file() and p.suffix.lower() in VIDEO_EXTS) or (p.is_dir() and _images(p)))
  if not found:
    raise ValueError(f"data.root {root}: no images, video files ({', '.join(VIDEO_EXTS)}) "
                     "or folders of images in it")
  return found


def iter_videos(root, *, size: tuple[int, int], max_frames: int | None = None
                ) -> Iterator[tuple[str, np.ndarray, None]]:
  """Yields `(video_id, frames_THW3 uint8 fit and padded to size, None)`: no labels."""
  h, w = size
  if h % 32 or w % 32 or h <= 0 or w <= 0:
    raise ValueError(f"data.height x data.width must be positive multiples of 32, got {h} x {w}")
  for p in list_videos(root):
    frames = read_image_folder(p, max_frames=max_frames) if p.is_dir() else \
        read_video_file(p, max_frames=max_frames)
    yield p.stem if p.is_file() else p.name, np.stack([fit_into(f, (h, w)) for f in frames]), None
