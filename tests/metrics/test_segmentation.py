"""Metrics on hand-made cases."""
import numpy as np
import pytest

from ttt_jax.metrics.segmentation import (Accumulator, confusion, iou_from_confusion,
                                          video_consistency)


def test_miou_wiou_by_hand():
  gt = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
  pred = np.array([[0, 1, 1, 1], [0, 0, 1, 2]])
  cm = confusion(pred, gt, 3)
  # class 0: tp 3, gt 4, pred 3 -> 3/4; class 1: tp 3, gt 3, pred 4 -> 3/4; class 2 absent in gt.
  m = iou_from_confusion(cm)
  assert m["miou"] == pytest.approx(0.75)
  assert m["wiou"] == pytest.approx(4 / 7 * 0.75 + 3 / 7 * 0.75)
  assert cm.sum() == 7  # the ignored pixel counts nowhere


def test_dataset_miou_is_one_confusion_matrix():
  acc = Accumulator(2)
  acc.add("a", np.zeros((1, 2, 2), int), np.zeros((1, 2, 2), int))  # perfect, class 0 only
  acc.add("b", np.zeros((1, 2, 2), int), np.ones((1, 2, 2), int))   # all wrong, class 1
  s = acc.summary()
  # One matrix: class 0 IoU = 4 / 8, class 1 IoU = 0 -> 0.25 (not the mean of per-video mIoUs 0.5).
  assert s["miou"] == pytest.approx(0.25)
  assert acc.videos["a"]["miou"] == 1.0


def test_mvc_official_window_range():
  t = 10
  gt = np.zeros((t, 1, 2), int)
  pred = np.zeros((t, 1, 2), int)
  pred[-1, 0, 0] = 1  # only the last frame flickers
  # range(T - n) leaves out the last full window, so with n = 2 the flicker at frame 9 is unseen.
  assert video_consistency(pred, gt, 2) == 1.0
  pred[-2, 0, 0] = 1  # frame 8 differs from frame 7: windows (7,8) sees it
  v = video_consistency(pred, gt, 2)
  assert v == pytest.approx((7 * 1.0 + 0.5) / 8)


def test_mvc_counts_void_as_a_value():
  gt = np.full((4, 1, 1), 255)
  pred = np.zeros((4, 1, 1), int)
  assert video_consistency(pred, gt, 2) == 1.0
  assert np.isnan(video_consistency(pred[:2], gt[:2], 2))  # no window


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match="does not match"):
    confusion(np.zeros((2, 2)), np.zeros((2, 3)), 2)
