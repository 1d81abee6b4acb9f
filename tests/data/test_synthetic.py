"""The synthetic benchmark: seeded, labelled, shifted, drifting."""
import numpy as np

from ttt_jax.data import synthetic


def test_deterministic_and_labelled():
  spec = synthetic.VideoSpec(seed=5, num_frames=12, height=32, width=48)
  f1, l1, s1 = synthetic.make_video(spec)
  f2, l2, s2 = synthetic.make_video(spec)
  np.testing.assert_array_equal(f1, f2)
  np.testing.assert_array_equal(l1, l2)
  assert f1.shape == (12, 32, 48, 3) and f1.dtype == np.uint8 and l1.shape == (12, 32, 48)
  present = set(np.unique(np.concatenate([synthetic.make_video(synthetic.VideoSpec(seed=s, num_frames=4))[1].ravel()
                                          for s in range(6)])))
  assert len(present) >= 6 and max(present) < synthetic.NUM_CLASSES


def test_motion_and_drifting_shift():
  f, l, sev = synthetic.make_video(synthetic.VideoSpec(seed=3, num_frames=24))
  assert not np.array_equal(l[0], l[-1])  # camera and objects move
  active = sev.max(0) > 0
  assert 2 <= active.sum() <= 3
  assert np.ptp(sev[:, active], axis=0).min() > 0.2  # severity drifts within the video
  clean, lc, sc = synthetic.make_video(synthetic.VideoSpec(seed=3, num_frames=24, shift=False))
  np.testing.assert_array_equal(lc, l)  # same scene, same labels
  assert not sc.any() and np.abs(clean.astype(int) - f).mean() > 5


def test_every_shift_type_changes_the_frame():
  f, _, _ = synthetic.make_video(synthetic.VideoSpec(seed=1, num_frames=1, shift=False))
  rng = np.random.default_rng(0)
  for i, name in enumerate(synthetic.SHIFTS):
    sev = np.zeros(len(synthetic.SHIFTS))
    sev[i] = 0.8
    out = synthetic.apply_shift(f[0], sev, rng)
    assert np.abs(out.astype(int) - f[0]).mean() > 2, name


def test_shuffled_variant_and_stills():
  f, l, _ = synthetic.make_video(synthetic.VideoSpec(seed=2, num_frames=10))
  fs, ls = synthetic.shuffle_frames(f, l, 0)
  assert sorted(map(bytes, fs)) == sorted(map(bytes, f)) and not np.array_equal(fs, f)
  imgs, labs = synthetic.make_stills(0, 3, 32, 32)
  assert imgs.shape == (3, 32, 32, 3) and labs.shape == (3, 32, 32)


def test_tfds_builder_array_record_without_tensorflow(tmp_path):
  import sys
  from ttt_jax.data.tfds_synthetic import build
  b = build(tmp_path, num_videos=2, num_frames=4, height=32, width=32, num_stills=3)
  ds = b.as_data_source(split="test")
  rec = {r["video_id"].decode(): r for r in (ds[i] for i in range(len(ds)))}
  ref = {v: (f, l) for v, f, l in synthetic.benchmark_videos(seed=1000, num_videos=2, num_frames=4,
                                                              height=32, width=32)}
  assert rec.keys() == ref.keys()
  for v, (f, l) in ref.items():
    np.testing.assert_array_equal(rec[v]["frames"], f)
    np.testing.assert_array_equal(rec[v]["labels"], l)
  assert len(b.as_data_source(split="train")) == 3
  assert "tensorflow" not in sys.modules
