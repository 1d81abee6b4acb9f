"""Bad input gets a clear error naming what was wrong."""
import numpy as np
import pytest

from ttt_jax.data.checks import check_frames
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
  with pytest.raises(ValueError, match=r"video x: frame\(s\) \[1, 2\] contain NaN or infinite"):
    check_frames(bad, "video x")
  with pytest.raises(ValueError, match="expected frames of shape"):
    check_frames(np.zeros((2, 4, 4, 3), np.uint8), frame_shape=(8, 8, 3))


def test_frame_size_the_model_cannot_take():
  with pytest.raises(ValueError, match="multiples of 32"):
    check_frame_size(segformer_config("tiny", 3), 30, 64)


def test_runner_rejects_nan_video_and_wrong_state():
  from tests.helpers import tiny_runner, random_frames
  runner, _ = tiny_runner()
  f = random_frames().astype(np.float32)
  f[2] = np.nan
  with pytest.raises(ValueError, match="video bad: frame.* NaN"):   # the method's tick maker checks
    runner.run_one("bad", f, 0)
  with pytest.raises(ValueError, match="video small: the model takes frames whose sides are multiples"):
    runner.run_one("small", random_frames(h=40), 0)
  from ttt_jax.engine.state import check_state_matches
  s, _ = runner.start("a", random_frames(), 0)
  s2, _ = runner.start("b", random_frames(h=64), 0)
  with pytest.raises(ValueError, match="does not match the model"):
    check_state_matches(s2, s)


def test_window_beyond_the_memory_is_refused_before_running():
  from tests.helpers import tiny_runner, random_frames
  runner, _ = tiny_runner("online_ttt_mae", "method.window=9")   # tiny: engine.max_window=8
  with pytest.raises(ValueError, match="'window' needs a window of 9 frames.*engine.max_window=8"):
    runner.run_one("v", random_frames(), 0)
  runner, _ = tiny_runner("offline")
  with pytest.raises(ValueError, match="offline.* needs a window of 12 frames.*engine.max_window=8"):
    runner.run_one("v", random_frames(t=12), 0)
