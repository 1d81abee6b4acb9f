"""DiTTA target building with the flow propagator (no torch), and the sam2-bridge CLI."""
import subprocess
import sys

import numpy as np
import pytest

from sam2_bridge import cache_schema
from sam2_bridge.propagators import FlowPropagator
from sam2_bridge.targets import (PromptConfig, check_probs, ditta_targets, reliability, sample_prompts,
                                 zero_shot_targets)


def test_reliability_is_one_minus_normalised_entropy():
  p = np.array([[[1.0, 0.0], [0.5, 0.5]]], np.float32)
  np.testing.assert_allclose(reliability(p), [[1.0, 0.0]], atol=1e-6)


def test_prompts_one_per_class_at_first_peak_pixel_and_threshold():
  p = np.full((4, 4, 3), 1 / 3, np.float32)
  p[1, 2] = p[3, 3] = [1, 0, 0]     # class 0 peaks first at (y=1, x=2)
  p[0, 0] = [0.05, 0.9, 0.05]       # class 1: lower peak
  out = sample_prompts(p, None, 0, 0, 10, PromptConfig(threshold=0.5))
  assert [(q.cls, q.x, q.y) for q in out][:1] == [(0, 2, 1)]
  assert {q.cls for q in out} == {0, 1}          # class 2 (uniform) never reaches the threshold
  assert sample_prompts(p, np.ones((4, 4), bool), 1, 0, 10, PromptConfig(threshold=0.5)) == []
  assert len(sample_prompts(p, None, 0, 0, 1, PromptConfig(threshold=0.5))) == 1  # object budget


def test_flow_targets_follow_the_labels(clip):
  frames, labels, probs = clip
  a = ditta_targets(FlowPropagator(), frames, probs[:4])
  n = a["masks"].shape[1]
  assert a["masks"].shape == (4, n, 64, 64) and n >= 3
  assert a["prompt_frames"][0] == 0 and np.all(np.diff(a["prompt_frames"]) >= 0)
  # Each object mask mostly covers ground truth of its prompt's class, on every frame.
  for o in range(n):
    m = a["masks"][:, o]
    assert m.any()
    assert (labels[:4][m] == a["prompt_classes"][o]).mean() > 0.8


def test_backward_pass_fills_frames_before_a_late_prompt(clip):
  frames, labels, probs = clip
  p = probs[:4].copy()
  p[:2] = 1.0 / p.shape[-1]                      # frames 0-1 unreliable: first prompts on frame 2
  a = ditta_targets(FlowPropagator(), frames, p, PromptConfig())
  assert a["prompt_frames"].min() == 2
  assert a["masks"][0].any() and a["masks"][1].any()   # reached only by the reverse pass


def test_zero_shot_covers_every_frame(clip):
  frames, _, probs = clip
  a = zero_shot_targets(FlowPropagator(), frames, probs[0])
  assert a["masks"].shape[0] == len(frames) and (a["prompt_frames"] == 0).all()
  assert a["masks"][-1].any()


def test_bad_probabilities_are_refused_before_work(clip):
  frames, _, probs = clip
  with pytest.raises(ValueError, match="expected 3"):
    check_probs(frames.shape, probs[:2], 3)
  with pytest.raises(ValueError, match="frame size"):
    check_probs(frames.shape, probs[:2, :32], 2)
  bad = probs[:2].copy()
  bad[0, 0, 0, 0] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    check_probs(frames.shape, bad, 2)


def _cli(*args, cwd=None):
  return subprocess.run([sys.executable, "-m", "sam2_bridge.cli", *args], capture_output=True, text=True,
                        cwd=cwd)


def test_cli_targets_writes_a_cache_the_reader_accepts(clip, tmp_path):
  frames, _, probs = clip
  np.save(tmp_path / "frames.npy", frames)
  np.save(tmp_path / "probs.npy", probs[:3])
  r = _cli("targets", "--video", str(tmp_path / "frames.npy"), "--probs", str(tmp_path / "probs.npy"),
           "--out", str(tmp_path / "c.npz"))
  assert r.returncode == 0, r.stderr
  arrays, meta = cache_schema.read_cache(tmp_path / "c.npz", "masks",
                                         video_digest=cache_schema.video_digest(frames), teacher="flow")
  assert arrays["masks"].shape[0] == 3 and meta["params"]["mode"] == "ditta"
  with pytest.raises(cache_schema.CacheMismatch, match="another video"):
    cache_schema.read_cache(tmp_path / "c.npz", "masks", video_digest=cache_schema.video_digest(frames[1:]))
  # Frames folder input, and a clear error for a count mismatch.
  import cv2
  (tmp_path / "jpg").mkdir()
  for i, f in enumerate(frames):
    cv2.imwrite(str(tmp_path / "jpg" / f"{i:05d}.png"), f[..., ::-1])
  np.save(tmp_path / "probs9.npy", np.concatenate([probs, probs[:1]]))
  r = _cli("targets", "--video", str(tmp_path / "jpg"), "--probs", str(tmp_path / "probs9.npy"),
           "--out", str(tmp_path / "d.npz"))
  assert r.returncode == 2 and "probabilities for 9 frames" in r.stderr, r.stderr


def test_cli_missing_sam2_checkpoint_fails_before_work(clip, tmp_path):
  pytest.importorskip("sam2")
  frames, _, probs = clip
  np.save(tmp_path / "frames.npy", frames)
  np.save(tmp_path / "probs.npy", probs[:2])
  base = ["targets", "--video", str(tmp_path / "frames.npy"), "--probs", str(tmp_path / "probs.npy"),
          "--out", str(tmp_path / "c.npz"), "--propagator", "sam2"]
  r = _cli(*base, "--sam2-checkpoint", str(tmp_path / "nope.pt"))
  assert r.returncode == 2 and "nope.pt does not exist" in r.stderr
  (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
  r = _cli(*base, "--sam2-checkpoint", str(tmp_path / "junk.pt"))
  assert r.returncode == 2 and "unreadable" in r.stderr
  r = _cli(*base, "--sam2-config", "configs/sam2.1/none.yaml")
  assert r.returncode == 2 and "not found" in r.stderr
  r = _cli(*base, "--image-size", "200")
  assert r.returncode == 2 and "multiple of 32" in r.stderr
  assert not (tmp_path / "c.npz").exists()
