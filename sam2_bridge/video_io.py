"""Reading a video for the bridge: a folder of frames or an array file (numpy only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

_EXTS = (".jpg", ".jpeg", ".png")


def _frame_files(p: Path) -> list[Path]:
  files = [f for f in p.iterdir() if f.suffix.lower() in _EXTS]
  if not files:
    raise ValueError(f"video {p}: no {'/'.join(_EXTS)} frames in the folder")
  key = (lambda f: int(f.stem)) if all(f.stem.isdigit() for f in files) else (lambda f: f.name)
  return sorted(files, key=key)


def _decode(p: Path, f: Path) -> np.ndarray:
  import cv2
  img = cv2.imread(str(f), cv2.IMREAD_COLOR)
  if img is None:
    raise ValueError(f"video {p}: cannot decode frame {f.name}")
  return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def video_shape(path) -> tuple[int, ...]:
  """`(T, H, W, C)` of a video without reading it whole (a `.npy` header, or the
  frame count and first frame of a folder)."""
  p = Path(path)
  if p.is_dir():
    files = _frame_files(p)
    return (len(files), *_decode(p, files[0]).shape)
  if p.is_file() and p.suffix == ".npy":
    return tuple(np.load(p, mmap_mode="r", allow_pickle=False).shape)
  return read_video(p).shape  # the errors of read_video


def read_video(path) -> np.ndarray:
  """uint8 `T, H, W, 3` RGB frames from a `.npy` file or a folder of JPEG/PNG frames.

  Folder frames are taken in the order of their integer stems (`00000.jpg`, ...)
  when all stems are integers, else by name.
  """
  p = Path(path)
  if not p.exists():
    raise FileNotFoundError(f"video {p} does not exist")
  if p.is_file():
    if p.suffix != ".npy":
      raise ValueError(f"video {p}: expected a .npy array file or a folder of frames")
    frames = np.load(p, allow_pickle=False)
  else:
    out = [_decode(p, f) for f in _frame_files(p)]
    if len({a.shape for a in out}) != 1:
      raise ValueError(f"video {p}: frames have different sizes {sorted({a.shape for a in out})}")
    frames = np.stack(out)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
    raise ValueError(f"video {p}: expected uint8 frames T x H x W x 3 with T >= 1, got "
                     f"{frames.dtype} {frames.shape}")
  return frames
