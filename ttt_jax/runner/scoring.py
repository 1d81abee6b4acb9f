"""The scoring protocol: every item's saved predictions against its labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ttt_jax.metrics.segmentation import Accumulator


def score(items, pred_dir, num_classes: int, first_scored) -> dict:
  """Scores `pred_dir/<id>.npz` for each `(id, labels)` of `items`, from frame
  `first_scored(T)` on. Returns the metrics summary plus the run's totals
  (seconds, skipped updates, resets, frames) and per-group parameter drift."""
  pred_dir = Path(pred_dir)
  acc = Accumulator(num_classes)
  tot = {"seconds": 0.0, "skipped": 0, "resets": 0, "frames": 0}
  drift: dict[str, list[float]] = {}
  for vid, gt in items:
    path = pred_dir / f"{vid}.npz"
    z = np.load(path)
    if z["labels"].shape != gt.shape:
      raise ValueError(f"{path}: predictions {z['labels'].shape} do not match the video's labels "
                       f"{gt.shape}; remove the file (or --out) to recompute")
    first = first_scored(len(gt))
    acc.add(vid, z["labels"][first:], gt[first:])
    add_totals(tot, drift, z)
  return {**acc.summary(), "totals": tot, "drift": drift}


def add_totals(tot: dict, drift: dict, z) -> None:
  """Adds one item's saved predictions (`z`, an npz) to the run's totals (seconds,
  skipped updates, resets, frames) and its per-group parameter drift."""
  tot["seconds"] += float(z["seconds"])
  tot["skipped"] += int(z["skipped"])
  tot["resets"] += int(z["resets"])
  tot["frames"] += len(z["labels"])
  if "drift" in z:  # predictions written before drift was recorded have none
    for g, v in zip(z["drift_groups"].tolist(), z["drift"].tolist()):
      drift.setdefault(g, []).append(v)
