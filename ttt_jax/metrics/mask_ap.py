"""Mask AP and AP50 as COCO defines them, by pycocotools' `COCOeval(iouType='segm')`.

Ground truth and predictions are binary masks per image, encoded as RLE
(`pycocotools.mask.encode` of a Fortran-ordered uint8 array); category ids are the
class ids + 1 (COCO's ids start at 1). AP = stats[0] (IoU 0.50:0.95, all areas,
100 detections), AP50 = stats[1]. Values are fractions (x 100 for the papers' tables).
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _rle(m_HW):
  r = mask_utils.encode(np.asfortranarray(m_HW.astype(np.uint8)))
  r["counts"] = r["counts"].decode("ascii")
  return r


def mask_ap(ground_truth, predictions, num_classes: int) -> dict:
  """COCO mask AP.

  Args:
    ground_truth: per image `(masks_NHW bool, labels_N int)`.
    predictions: per image (same order) `(masks_MHW bool, labels_M int, scores_M float)`.
    num_classes: classes are 0..num_classes-1.
  Returns: {'ap', 'ap50', 'images', 'instances', 'detections'} (fractions).
  """
  if len(ground_truth) != len(predictions):
    raise ValueError(f"{len(predictions)} prediction sets for {len(ground_truth)} ground-truth images")
  images, anns, dets = [], [], []
  for i, ((gm, gl), (pm, pl, ps)) in enumerate(zip(ground_truth, predictions)):
    gm, pm = np.asarray(gm, bool), np.asarray(pm, bool)
    h, w = gm.shape[1:] if gm.ndim == 3 else pm.shape[1:]
    if pm.size and pm.shape[1:] != (h, w):
      raise ValueError(f"image {i}: predicted masks {pm.shape[1:]} but ground truth {(h, w)}")
    images.append({"id": i + 1, "height": int(h), "width": int(w)})
    for m, c in zip(gm, np.asarray(gl)):
      if not 0 <= c < num_classes:
        raise ValueError(f"image {i}: ground-truth class {c} outside 0..{num_classes - 1}")
      r = _rle(m)
      anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1, "segmentation": r,
                   "area": float(mask_utils.area(r)), "bbox": mask_utils.toBbox(r).tolist(), "iscrowd": 0})
    for m, c, s in zip(pm, np.asarray(pl), np.asarray(ps)):
      dets.append({"image_id": i + 1, "category_id": int(c) + 1, "segmentation": _rle(m), "score": float(s)})
  if not anns:
    raise ValueError("mask AP needs at least one ground-truth instance")
  out = {"images": len(images), "instances": len(anns), "detections": len(dets)}
  if not dets:
    return {"ap": 0.0, "ap50": 0.0, **out}
  with contextlib.redirect_stdout(io.StringIO()):   # pycocotools prints its progress
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)]}
    gt.createIndex()
    ev = COCOeval(gt, gt.loadRes(dets), iouType="segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  # stats are -1 where no category in a range has ground truth; AP over all areas has some.
  return {"ap": float(max(ev.stats[0], 0.0)), "ap50": float(max(ev.stats[1], 0.0)), **out}
