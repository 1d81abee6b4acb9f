"""Bad input gets a clear error naming what was wrong."""
import numpy as np
import pytest

from ttt_jax.engine.drivers import check_frames
from ttt_jax.methods.segformer_task import check_frame_size
from ttt_jax.models.segformer import segformer_config


def test_frame_checks():
  with pytest.raises(ValueError, match="rank 4"):
    check_frames(np.zeros((4, 4, 3), np.uint8))
  with pytest.raises(ValueError, match="empty"):
    check_frames(np.zeros((0, 4, 4, 3), np.uint8))
  with pytest.raises(ValueError, match="3 colour channels"):
    check_frames(np.zeros((2, 4, 4, 4), np.uint8))
  with pytest.raises(ValueError, match="dtype int64"):
    check_frames(np.zeros((2, 4, 4, 3), np.int64))
  bad = np.zeros((3, 4, 4, 3), np.float32)
  bad[1, 0, 0, 0] = np.nan
  bad[2, 1, 1, 1] = np.inf
  with pytest.raises(ValueError, match=r"frame\(s\) \[1, 2\] contain NaN or infinite"):
    check_frames(bad, "video x")
  with pytest.raises(ValueError, match="expected frames of shape"):
    check_frames(np.zeros((2, 4, 4, 3), np.uint8), frame_shape=(8, 8, 3))


def test_frame_size_the_model_cannot_take():
  with pytest.raises(ValueError, match="multiples of 32"):
    check_frame_size(segformer_config("tiny", 3), 30, 64)


def test_runner_rejects_nan_video_and_wrong_state():
  from tests.helpers import tiny_runner, random_frames
  runner, _ = tiny_runner(mode="window")
  f = random_frames().astype(np.float32)
  f[2] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    runner.run_one(f, 0)
  from ttt_jax.engine.state import check_state_matches
  s = runner.state_for(random_frames()[0], 0)
  s2 = runner.state_for(random_frames(h=64)[0], 0)
  with pytest.raises(ValueError, match="does not match the model"):
    check_state_matches(s2, s)
