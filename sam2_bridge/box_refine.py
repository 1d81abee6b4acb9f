"""SAM2 masks from boxes, for CAST's pseudo-labels (the paper's teacher segments the
boxes Grounding-DINO finds with SAM2; here the boxes are the adapted teacher's).

`sam2.SAM2ImagePredictor` needs torchvision, which this environment leaves out (see
README), so each image is a one-frame video for SAM2's video predictor, fed from
memory as `SAM2Propagator` does; each box prompts its own object on that frame, and
its mask is the returned logits > 0 (probability 0.5, as the paper thresholds).
"""
from __future__ import annotations

import numpy as np


def boxes_from_masks(masks_NGHW: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
  """`(N, G, 4)` float32 boxes (x0, y0, x1, y1) in image pixels of masks at any
  resolution; NaN rows for empty masks."""
  n, g, h, w = masks_NGHW.shape
  sy, sx = image_hw[0] / h, image_hw[1] / w
  out = np.full((n, g, 4), np.nan, np.float32)
  for i in range(n):
    for j in range(g):
      ys, xs = np.nonzero(masks_NGHW[i, j])
      if len(ys):
        out[i, j] = (xs.min() * sx, ys.min() * sy, (xs.max() + 1) * sx, (ys.max() + 1) * sy)
  return out


def refine_boxes(propagator, images_NHW3: np.ndarray, boxes_NG4: np.ndarray) -> np.ndarray:
  """`(N, G, H, W)` bool SAM2 masks of each non-NaN box (`propagator`: a SAM2Propagator)."""
  images_NHW3, boxes_NG4 = np.asarray(images_NHW3), np.asarray(boxes_NG4, np.float32)
  if images_NHW3.ndim != 4 or images_NHW3.shape[-1] != 3 or images_NHW3.dtype != np.uint8:
    raise ValueError(f"images must be uint8 N x H x W x 3, got {images_NHW3.dtype} {images_NHW3.shape}")
  if boxes_NG4.ndim != 3 or boxes_NG4.shape[0] != len(images_NHW3) or boxes_NG4.shape[2] != 4:
    raise ValueError(f"boxes must be N x G x 4 for {len(images_NHW3)} images, got {boxes_NG4.shape}")
  n, h, w, _ = images_NHW3.shape
  out = np.zeros((n, boxes_NG4.shape[1], h, w), bool)
  for i in range(n):
    valid = [j for j in range(boxes_NG4.shape[1]) if np.isfinite(boxes_NG4[i, j]).all()]
    if not valid:
      continue
    propagator.start(images_NHW3[i:i + 1])
    for j in valid:
      _, ids, logits = propagator.predictor.add_new_points_or_box(
          inference_state=propagator.state, frame_idx=0, obj_id=int(j), box=boxes_NG4[i, j])
      out[i, j] = (logits[list(ids).index(j), 0] > 0).cpu().numpy()
  return out
