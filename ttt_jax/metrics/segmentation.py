"""Segmentation metrics: confusion matrix, mIoU, frequency-weighted IoU, mVC_n.

All numpy, on integer label maps; `ignore` (255) pixels of the ground truth
count nowhere in IoU. Dataset-level mIoU / wIoU come from one confusion matrix
summed over every evaluated frame, over classes present in the ground truth.
"""
from __future__ import annotations

import numpy as np

IGNORE = 255


def confusion(pred, gt, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
  """`C x C` int64 counts, rows = ground truth, cols = prediction."""
  pred, gt = np.asarray(pred), np.asarray(gt)
  if pred.shape != gt.shape:
    raise ValueError(f"prediction shape {pred.shape} does not match ground truth {gt.shape}")
  keep = gt != ignore
  g = gt[keep].astype(np.int64)
  p = pred[keep].astype(np.int64)
  if g.size and g.max() >= num_classes:
    raise ValueError(f"ground truth has class {g.max()} >= num_classes {num_classes}")
  p = np.clip(p, 0, num_classes - 1)
  return np.bincount(g * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def iou_from_confusion(cm: np.ndarray) -> dict:
  """mIoU and fwIoU (in [0, 1]) over classes present in the ground truth."""
  tp = np.diag(cm).astype(np.float64)
  gt_n = cm.sum(1).astype(np.float64)
  union = gt_n + cm.sum(0) - tp
  present = gt_n > 0
  iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
  miou = float(np.mean(iou[present])) if present.any() else float("nan")
  freq = gt_n / max(gt_n.sum(), 1)
  wiou = float(np.sum(freq[present] * iou[present])) if present.any() else float("nan")
  return {"miou": miou, "wiou": wiou, "iou_per_class": iou.tolist()}


def per_frame_miou(pred_THW, gt_THW, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
  """mIoU of each frame on its own, `T` floats (classes present in that frame)."""
  return np.array([iou_from_confusion(confusion(p, g, num_classes, ignore))["miou"]
                   for p, g in zip(pred_THW, gt_THW)])


def video_consistency(pred_THW, gt_THW, n: int) -> float:
  """mVC_n of one video, the official VSPW definition (METHODS.md).

  For window starts i = 0 .. T - n - 1 (the official `range(T - n)`), the share
  of pixels whose prediction is constant over frames i..i+n-1 among pixels whose
  ground truth is constant over them (void counts as a value); averaged over
  windows. NaN if the video has no window.
  """
  pred, gt = np.asarray(pred_THW), np.asarray(gt_THW)
  t = len(gt)
  scores = []
  for i in range(t - n):
    g, p = gt[i:i + n], pred[i:i + n]
    g_const = np.all(g == g[0:1], axis=0)
    both = g_const & np.all(p == p[0:1], axis=0)
    denom = g_const.sum()
    if denom:
      scores.append(both.sum() / denom)
  return float(np.mean(scores)) if scores else float("nan")


class Accumulator:
  """Collects per-video predictions into dataset-level metrics.

  `add(video_id, pred_THW, gt_THW)` per video; `summary()` returns miou, wiou,
  mvc8, mvc16 (dataset), plus per-video metrics and per-frame mIoU.
  """

  def __init__(self, num_classes: int, ignore: int = IGNORE):
    self.num_classes, self.ignore = num_classes, ignore
    self.cm = np.zeros((num_classes, num_classes), np.int64)
    self.videos: dict[str, dict] = {}

  def add(self, video_id: str, pred_THW, gt_THW) -> dict:
    # One confusion matrix per frame serves both the per-frame and the video scores.
    frame_cms = [confusion(p, g, self.num_classes, self.ignore) for p, g in zip(pred_THW, gt_THW)]
    cm = np.sum(frame_cms, axis=0, dtype=np.int64) if frame_cms else np.zeros_like(self.cm)
    self.cm += cm
    m = iou_from_confusion(cm)
    pf = np.array([iou_from_confusion(c)["miou"] for c in frame_cms])
    rec = {"miou": m["miou"], "wiou": m["wiou"], "frames": int(len(gt_THW)),
           "mvc8": video_consistency(pred_THW, gt_THW, 8),
           "mvc16": video_consistency(pred_THW, gt_THW, 16),
           "frame_miou_mean": float(np.nanmean(pf)), "per_frame_miou": pf.tolist()}
    self.videos[video_id] = rec
    return rec

  def summary(self) -> dict:
    m = iou_from_confusion(self.cm)
    def mvc(k):  # videos too short for a window have NaN and are left out
      vals = [v[k] for v in self.videos.values() if not np.isnan(v[k])]
      return float(np.mean(vals)) if vals else float("nan")
    frames = sum(v["frames"] for v in self.videos.values())
    # The video-TTT paper's number: per-frame mIoU averaged over a video, videos weighted by length.
    fw = (sum(v["frame_miou_mean"] * v["frames"] for v in self.videos.values()) / frames
          if frames else float("nan"))
    return {"miou": m["miou"], "wiou": m["wiou"], "mvc8": mvc("mvc8"), "mvc16": mvc("mvc16"),
            "frame_miou": fw, "iou_per_class": m["iou_per_class"], "per_video": self.videos}
