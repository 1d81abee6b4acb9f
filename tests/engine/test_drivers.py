"""Scan, stream, vmap and sharded drivers give bit-identical predictions, for
TTT-MAE (frame ticks) and DiTTA (pytree ticks: frame, t-1, targets)."""
import jax
import numpy as np
import pytest

from ttt_jax.engine import drivers
from ttt_jax.engine.checkpoint import restore_state, save_state
from tests.helpers import tiny_runner, video


@pytest.fixture(scope="module")
def online():
  runner, _ = tiny_runner("online_ttt_mae")
  vids = [video(0, t=6)[0], video(1, t=4)[0], video(2, t=6)[0], video(3, t=4)[0]]
  ref = [runner.run_one(f"v{i}", v, i, driver="scan")[0] for i, v in enumerate(vids)]
  return runner, vids, ref


def test_adaptation_changes_predictions(online):
  runner, vids, ref = online
  base, _ = tiny_runner("main_task")
  plain = base.run_one("v0", vids[0], 0)[0]
  # Otherwise the equality tests below would hold trivially.
  assert not np.array_equal(plain, ref[0])


def test_stream_equals_scan(online):
  runner, vids, ref = online
  for i, v in enumerate(vids[:2]):
    labels, _ = runner.run_one(f"v{i}", v, i, driver="stream")
    np.testing.assert_array_equal(labels, ref[i])


def test_scan_chunk_does_not_change_predictions(online):
  runner, vids, ref = online
  whole, _ = tiny_runner("online_ttt_mae", "engine.scan_chunk=0")   # one scan over all ticks
  np.testing.assert_array_equal(whole.run_one("v0", vids[0], 0)[0], ref[0])


def test_live_stream_iterator_equals_scan_and_traces_once(online):
  import chex
  runner, vids, ref = online
  step = jax.jit(chex.assert_max_traces(runner._step, n=1), donate_argnums=0)
  for i in (0, 2):  # a second video of the same frame shape reuses the trace
    state, data = runner.start(f"v{i}", vids[i], i)
    labels = [lab for _, lab in drivers.run_stream(step, state, iter(list(data)))]
    np.testing.assert_array_equal(np.stack(labels), ref[i])


def test_vmap_unequal_lengths_equals_scan(online):
  runner, vids, ref = online
  res = runner.run_many([(f"v{i}", v) for i, v in enumerate(vids)], range(4))
  for (labels, _), r in zip(res, ref):
    assert labels.shape == r.shape
    np.testing.assert_array_equal(labels, r)


def test_sharded_4_devices_equals_scan(online):
  assert len(jax.devices()) == 4, "conftest sets 4 simulated CPU devices"
  runner, vids, ref = online
  res = runner.run_many([(f"v{i}", v) for i, v in enumerate(vids)], range(4), mesh=drivers.video_mesh())
  for (labels, _), r in zip(res, ref):
    np.testing.assert_array_equal(labels, r)


def test_checkpoint_resume_equals_uninterrupted(online, tmp_path):
  runner, vids, ref = online
  step = drivers.stream_driver(runner._step)
  state, data = runner.start("v0", vids[0], 0)
  first = []
  for i, (state, lab) in enumerate(drivers.run_stream(step, state, data[:2])):
    first.append(lab)
  save_state(tmp_path / "ck", state, frame_index=2)
  del state
  like, _ = runner.start("v0", vids[0], 0)
  restored, done = restore_state(tmp_path / "ck", like)
  assert done == 2
  rest = [lab for _, lab in drivers.run_stream(step, restored, data[done:])]
  np.testing.assert_array_equal(np.stack(first + rest), ref[0])


def test_restore_refuses_other_model(online, tmp_path):
  runner, vids, _ = online
  save_state(tmp_path / "ck", runner.start("v0", vids[0], 0)[0], frame_index=0)
  other, _ = tiny_runner("online_ttt_mae", "engine.max_window=2", "method.window=2")
  with pytest.raises(ValueError, match="does not match"):
    restore_state(tmp_path / "ck", other.start("v0", vids[0], 0)[0])
  with pytest.raises(FileNotFoundError, match="no saved stream state"):
    restore_state(tmp_path / "missing", other.start("v0", vids[0], 0)[0])
