"""DINOv2 patch features per frame through transformers' `Dinov2Model` (local folder)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

IMG_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMG_STD = np.array([0.229, 0.224, 0.225], np.float32)


def load_dinov2(model_dir, device: str = "cpu"):
  """`Dinov2Model.from_pretrained` on a local checkpoint folder, with clear errors."""
  p = Path(model_dir)
  if not (p / "config.json").is_file():
    raise FileNotFoundError(f"DINOv2 checkpoint folder {p} has no config.json "
                            f"(expected a folder written by save_pretrained)")
  from transformers import Dinov2Model
  try:
    model = Dinov2Model.from_pretrained(str(p), local_files_only=True)
  except (OSError, ValueError) as e:
    raise ValueError(f"DINOv2 checkpoint {p} is unreadable: {e}") from e
  return model.to(device).eval()


def feature_size(height: int, width: int, patch: int, size: tuple[int, int] | None = None):
  """Input size (multiples of the patch, floored) and the feature grid `(h, w)`."""
  h, w = size or (height, width)
  h, w = (h // patch) * patch, (w // patch) * patch
  if h < patch or w < patch:
    raise ValueError(f"DINOv2 needs images of at least {patch} px a side, got {h} x {w}")
  return (h, w), (h // patch, w // patch)


def extract_features(model, frames_THWC: np.ndarray, *, size: tuple[int, int] | None = None,
                     batch: int = 8) -> tuple[np.ndarray, float]:
  """float16 `T, h, w, C` patch features (registers and CLS dropped), and seconds."""
  import cv2
  import torch
  patch = model.config.patch_size
  (ih, iw), (fh, fw) = feature_size(*frames_THWC.shape[1:3], patch, size)
  dev = next(model.parameters()).device
  out = []
  t0 = time.perf_counter()
  with torch.inference_mode():
    for i in range(0, len(frames_THWC), batch):
      x = np.stack([cv2.resize(f, (iw, ih), interpolation=cv2.INTER_AREA) for f in frames_THWC[i:i + batch]])
      x = (x.astype(np.float32) / 255.0 - IMG_MEAN) / IMG_STD
      hs = model(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev)).last_hidden_state
      out.append(hs[:, -fh * fw:].reshape(len(x), fh, fw, -1).float().cpu().numpy().astype(np.float16))
  return np.concatenate(out), time.perf_counter() - t0
