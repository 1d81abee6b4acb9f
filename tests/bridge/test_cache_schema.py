"""The shared cache: round trip, atomic files, and refusal of foreign caches."""
import subprocess
import sys

import numpy as np
import pytest

from sam2_bridge import cache_schema as cs


def _masks(t=3, n=2, h=4, w=5):
  rng = np.random.default_rng(0)
  return {"masks": rng.random((t, n, h, w)) > 0.5, "object_ids": np.arange(n, dtype=np.int32),
          "prompt_frames": np.zeros(n, np.int32)}


def test_round_trip_and_refusals(tmp_path):
  frames = np.random.default_rng(1).integers(0, 255, (3, 4, 5, 3), dtype=np.uint8)
  vd = cs.video_digest(frames)
  ck = tmp_path / "ckpt.pt"
  ck.write_bytes(b"weights")
  td = cs.checkpoint_digest(ck)
  p = cs.write_cache(tmp_path / "v.npz", "masks", _masks(), video_digest=vd, teacher="sam2-hiera-t",
                     teacher_digest=td, params={"tau": 0.8}, versions={"numpy": np.__version__})
  arrays, meta = cs.read_cache(p, "masks", video_digest=vd, teacher="sam2-hiera-t", teacher_digest=td)
  np.testing.assert_array_equal(arrays["masks"], _masks()["masks"])
  assert meta["params"] == {"tau": 0.8} and not list(tmp_path.glob(".*tmp*"))
  other = frames.copy()
  other[0, 0, 0, 0] ^= 1
  with pytest.raises(cs.CacheMismatch, match="another video"):
    cs.read_cache(p, "masks", video_digest=cs.video_digest(other))
  with pytest.raises(cs.CacheMismatch, match="teacher 'sam2-hiera-t', asked for 'flow'"):
    cs.read_cache(p, "masks", video_digest=vd, teacher="flow")
  ck.write_bytes(b"other weights")
  with pytest.raises(cs.CacheMismatch, match="another sam2-hiera-t checkpoint"):
    cs.read_cache(p, "masks", video_digest=vd, teacher_digest=cs.checkpoint_digest(ck))
  with pytest.raises(cs.CacheMismatch, match="asked for 'features'"):
    cs.read_cache(p, "features", video_digest=vd)


def test_bad_arrays_are_refused(tmp_path):
  bad = _masks()
  bad["masks"] = bad["masks"].astype(np.uint8)
  with pytest.raises(ValueError, match="'masks' must be bool"):
    cs.write_cache(tmp_path / "x.npz", "masks", bad, video_digest="a", teacher="t", teacher_digest="d",
                   params={}, versions={})
  with pytest.raises(FileNotFoundError, match="teacher checkpoint"):
    cs.checkpoint_digest(tmp_path / "missing")


def test_schema_imports_neither_framework():
  code = ("import sys, sam2_bridge.cache_schema; "
          "assert not {'torch', 'jax', 'flax'} & set(sys.modules), sorted(sys.modules)")
  subprocess.run([sys.executable, "-c", code], check=True)
