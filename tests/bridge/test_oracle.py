"""The oracle propagator: the synthetic generator's objects as a perfect segmenter."""
import subprocess
import sys

import numpy as np
import pytest

from sam2_bridge import cache_schema
from sam2_bridge.propagators import OraclePropagator
from sam2_bridge.targets import ditta_targets
from ttt_jax.data import synthetic


@pytest.fixture(scope="module")
def video():
  f, l, _, inst = synthetic.make_video(synthetic.VideoSpec(seed=3001, num_frames=8), instances=True)
  return f, l, inst


def test_instances_do_not_change_the_video_and_hold_one_class_each(video):
  f, l, inst = video
  f0, l0, _ = synthetic.make_video(synthetic.VideoSpec(seed=3001, num_frames=8))
  np.testing.assert_array_equal(f, f0)
  np.testing.assert_array_equal(l, l0)
  for k in np.unique(inst):
    assert len(np.unique(l[inst == k])) == 1
  np.testing.assert_array_equal(synthetic.benchmark_instances("synth_3_001", num_frames=8, height=64, width=64),
                                inst)
  with pytest.raises(ValueError, match="no synthetic benchmark video id"):
    synthetic.benchmark_instances("clip_a", num_frames=8, height=64, width=64)


def test_oracle_tracks_the_instance_under_the_point_and_keeps_it_through_a_mask(video):
  f, _, inst = video
  prop = OraclePropagator(inst)
  prop.start(f)
  y, x = np.argwhere(inst[2] == inst[2, 40, 10])[0]
  prop.add_points(2, 7, np.array([[x, y]], np.float32), np.array([1]))
  out = list(prop.propagate(2, reverse=True))
  assert [t for t, _, _ in out] == [2, 1, 0]
  for t, ids, masks in out:
    np.testing.assert_array_equal(masks[0], inst[t] == inst[2, y, x])
  prop.reset()
  prop.add_mask(5, 3, inst[5] == inst[5, 40, 10])
  t, ids, masks = next(prop.propagate(6))
  assert ids == [3] and np.array_equal(masks[0], inst[6] == inst[5, 40, 10])


def test_ditta_targets_from_the_oracle_are_exact_objects(video):
  f, l, inst = video
  conf = np.random.default_rng(0).uniform(0.5, 1.0, (4, 64, 64, 1)).astype(np.float32)
  probs = np.eye(8, dtype=np.float32)[l[:4]] * conf + (1 - conf) / 8   # an ISS right everywhere
  a = ditta_targets(OraclePropagator(inst), f, probs)
  n = a["masks"].shape[1]
  assert n >= 3
  for o in range(n):
    for t in range(4):
      m = a["masks"][t, o]
      if m.any():
        assert len(np.unique(inst[t][m])) == 1 and (inst[t] == inst[t][m][0]).sum() == m.sum()


def test_cli_oracle_needs_the_exported_instances(video, tmp_path):
  f, l, inst = video
  v = tmp_path / "export" / "synth_3_001"
  v.mkdir(parents=True)
  np.save(v / "frames.npy", f)
  np.save(v / "iss_probs.npy", (np.eye(8, dtype=np.float32)[l[:2]] * 0.9 + 0.1 / 8))
  args = [sys.executable, "-m", "sam2_bridge.cli", "targets", "--export-dir", str(tmp_path / "export"),
          "--out-dir", str(tmp_path / "t"), "--propagator", "oracle"]
  r = subprocess.run(args, capture_output=True, text=True)
  assert r.returncode != 0 and "instances.npy" in r.stderr
  np.save(v / "instances.npy", inst)
  r = subprocess.run(args, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr
  _, meta = cache_schema.read_cache(tmp_path / "t" / "synth_3_001.npz", "masks",
                                    video_digest=cache_schema.video_digest(f), teacher="oracle")
  assert meta["teacher"] == "oracle"
