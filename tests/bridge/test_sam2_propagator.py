"""The real SAM2 video predictor (Hiera-tiny, random weights, 128 px) on CPU."""
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sam2")

from sam2_bridge.sam2_propagator import SAM2Propagator, build_predictor  # noqa: E402
from sam2_bridge.targets import ditta_targets  # noqa: E402

CFG = "configs/sam2.1/sam2.1_hiera_t.yaml"


@pytest.fixture(scope="module")
def prop():
  return SAM2Propagator(CFG, None, image_size=128, seed=0)


def _late_then_two_frames(p, frames):
  """Layouts that hit upstream's CPU bfloat16 memory bug: an object prompted on a later
  frame and propagation from 0; objects prompted on different frames; reverse from an
  unprompted frame."""
  p.start(frames)
  p.add_points(0, 0, np.array([[10, 40]], np.float32), np.array([1], np.int32))
  p.add_points(2, 1, np.array([[50, 20]], np.float32), np.array([1], np.int32))
  fwd = list(p.propagate(0))
  rev = list(p.propagate(len(frames) - 1, reverse=True))
  return fwd, rev


def test_prompt_layouts_of_the_dtype_bug_run(prop, clip):
  frames = clip[0][:5]
  fwd, rev = _late_then_two_frames(prop, frames)
  assert [t for t, _, _ in fwd] == list(range(5)) and [t for t, _, _ in rev] == [4, 3, 2, 1, 0]
  t, ids, masks = fwd[3]
  assert ids == [0, 1] and masks.shape == (2, 64, 64) and masks.dtype == bool


def test_the_layouts_fail_without_the_fix(clip):
  """Shows the test above exercises the bug: the unpatched predictor fails on it."""
  import torch
  prop = SAM2Propagator(CFG, None, image_size=128, seed=0)
  prop.predictor.memory_attention._forward_pre_hooks.clear()
  with pytest.raises(RuntimeError, match="dtype"):
    _late_then_two_frames(prop, clip[0][:5])
  del torch


def test_ditta_targets_with_sam2(prop, clip):
  frames, _, probs = clip
  a = ditta_targets(prop, frames[:4], probs[:4])
  assert a["masks"].shape[:1] == (4,) and a["masks"].shape[1] >= 1
  assert a["masks"].shape[2:] == (64, 64)


def test_random_weights_are_reproducible():
  import torch
  a = build_predictor(CFG, None, image_size=128, seed=3)
  b = build_predictor(CFG, None, image_size=128, seed=3)
  for (n, x), (_, y) in zip(list(a.state_dict().items())[:20], list(b.state_dict().items())[:20]):
    assert torch.equal(x, y), n


def test_box_masks_from_sam2_and_the_cache(prop, tmp_path):
  """`sam2-bridge boxes`: one mask per box (NaN rows none), cached with the images' digest."""
  from sam2_bridge import cache_schema
  from sam2_bridge.box_refine import boxes_from_masks, refine_boxes
  from sam2_bridge.cli import main
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (2, 40, 56, 3), dtype=np.uint8)
  masks = np.zeros((2, 3, 20, 28), bool)   # teacher masks at half resolution
  masks[0, 0, 2:6, 3:9] = True
  masks[1, 1, 10:20, 0:4] = True
  boxes = boxes_from_masks(masks, (40, 56))
  np.testing.assert_allclose(boxes[0, 0], [6, 4, 18, 12])
  assert np.isnan(boxes[0, 1]).all() and np.isfinite(boxes[1, 1]).all()
  out = refine_boxes(prop, images, boxes)
  assert out.shape == (2, 3, 40, 56) and not out[0, 1].any() and not out[1, 0].any()
  np.save(tmp_path / "images.npy", images)
  np.save(tmp_path / "boxes.npy", boxes)
  with pytest.raises(SystemExit):
    main(["boxes", "--images", str(tmp_path / "images.npy"), "--boxes", str(tmp_path / "images.npy"),
          "--out", str(tmp_path / "x.npz"), "--sam2-config", CFG, "--image-size", "128"])
  main(["boxes", "--images", str(tmp_path / "images.npy"), "--boxes", str(tmp_path / "boxes.npy"),
        "--out", str(tmp_path / "c.npz"), "--sam2-config", CFG, "--image-size", "128"])
  arrays, meta = cache_schema.read_cache(tmp_path / "c.npz", "box_masks",
                                         video_digest=cache_schema.video_digest(images))
  np.testing.assert_array_equal(arrays["masks"], out)   # random weights from seed 0: the same masks
  assert meta["teacher"].startswith("sam2:")
