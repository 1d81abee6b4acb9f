"""Mask AP through pycocotools on fixtures with known answers."""
import numpy as np
import pytest

from ttt_jax.metrics.mask_ap import mask_ap


def _box(h, w, y0, y1, x0, x1):
  m = np.zeros((h, w), bool)
  m[y0:y1, x0:x1] = True
  return m


def test_known_answers():
  a, b = _box(20, 20, 0, 10, 0, 10), _box(20, 20, 10, 20, 10, 20)
  gt = [(np.stack([a, b]), np.array([0, 0]))]
  perfect = mask_ap(gt, [(np.stack([a, b]), np.array([0, 0]), np.array([0.9, 0.8]))], 2)
  assert perfect["ap"] == pytest.approx(1.0) and perfect["ap50"] == pytest.approx(1.0)
  # IoU 0.6 passes 3 of the 10 thresholds 0.50:0.05:0.95.
  iou06 = _box(20, 20, 0, 10, 0, 6)
  r = mask_ap([(a[None], np.array([0]))], [(iou06[None], np.array([0]), np.array([0.9]))], 2)
  assert r["ap"] == pytest.approx(0.3) and r["ap50"] == pytest.approx(1.0)
  # A false positive ranked first: precision 1/2 at recall 1/2, 2/3 at recall 1; interpolated 2/3 everywhere.
  fp = _box(20, 20, 0, 5, 15, 20)
  r = mask_ap(gt, [(np.stack([fp, a, b]), np.array([0, 0, 0]), np.array([0.95, 0.9, 0.8]))], 2)
  assert r["ap"] == pytest.approx(2 / 3, abs=1e-3) and r["ap50"] == pytest.approx(2 / 3, abs=1e-3)
  # The wrong class scores nothing; no detections at all score 0.
  assert mask_ap(gt, [(np.stack([a, b]), np.array([1, 1]), np.array([0.9, 0.8]))], 2)["ap"] == 0.0
  assert mask_ap(gt, [(np.zeros((0, 20, 20), bool), np.zeros(0, int), np.zeros(0))], 2)["ap"] == 0.0


def test_bad_input():
  a = _box(8, 8, 0, 4, 0, 4)
  with pytest.raises(ValueError, match="predicted masks"):
    mask_ap([(a[None], np.array([0]))], [(np.zeros((1, 4, 4), bool), np.array([0]), np.array([1.0]))], 1)
  with pytest.raises(ValueError, match="outside"):
    mask_ap([(a[None], np.array([3]))], [(a[None], np.array([0]), np.array([1.0]))], 2)
