"""Point segmentation metrics: mIoU over a dataset's points (one confusion matrix
summed over scenes, classes present in the ground truth, label -1 ignored), per
scene and per class."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ttt_jax.metrics.segmentation import confusion, iou_from_confusion

IGNORE = -1


def score_scenes(items, pred_dir, num_classes: int) -> dict:
  """Scores `pred_dir/<scene_id>.npz` against each `(scene_id, labels_N)` of `items`.
  Returns miou, wiou, iou_per_class, per_scene (mIoU of each scene alone), the
  number of scenes, seconds, skipped updates, and parameter drift per group."""
  pred_dir = Path(pred_dir)
  cm = np.zeros((num_classes, num_classes), np.int64)
  per_scene, drift = {}, {}
  tot = {"scenes": 0, "seconds": 0.0, "skipped": 0}
  for sid, gt in items:
    path = pred_dir / f"{sid}.npz"
    z = np.load(path)
    if z["labels"].shape != np.shape(gt):
      raise ValueError(f"{path}: predictions {z['labels'].shape} do not match the scene's labels "
                       f"{np.shape(gt)}; remove the file (or --out) to recompute")
    c = confusion(z["labels"], gt, num_classes, ignore=IGNORE)
    cm += c
    per_scene[sid] = iou_from_confusion(c)["miou"]
    tot["scenes"] += 1
    tot["seconds"] += float(z["seconds"])
    tot["skipped"] += int(z["skipped"])
    for g, v in zip(z["drift_groups"].tolist(), z["drift"].tolist()):
      drift.setdefault(g, []).append(v)
  return {**iou_from_confusion(cm), "per_scene": per_scene, **tot,
          "drift": {g: {"mean": float(np.mean(v)), "max": float(np.max(v))} for g, v in drift.items()}}
