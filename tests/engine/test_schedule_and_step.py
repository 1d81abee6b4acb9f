"""Memory modes as schedules; the step's parameter subset, skip rule and memory."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ttt_jax.engine import memory as mem_lib
from ttt_jax.engine.schedule import make_schedule, warmup_frames
from ttt_jax.engine.state import split_params
from ttt_jax.engine.step import Learner, StepConfig, Tick, init_state, make_step


def test_ring_buffer_keeps_last_k_and_samples_valid_slots():
  m = mem_lib.empty_memory(3, jnp.zeros((1, 1, 1), jnp.uint8))
  for v in range(1, 6):
    m = mem_lib.push(m, jnp.full((1, 1, 1), v, jnp.uint8))
  assert int(m.count) == 3
  assert sorted(np.asarray(m.frames_KHWC).ravel().tolist()) == [3, 4, 5]
  m2 = mem_lib.push(mem_lib.empty_memory(4, jnp.zeros((1,), jnp.float32)), jnp.ones((1,)) * 7)
  draws = mem_lib.sample(m2, jax.random.key(0), 64)
  assert np.all(np.asarray(draws) == 7)  # only the one valid slot, with replacement
  m3 = mem_lib.push(m2, jnp.ones((1,)) * 9, enabled=False)
  assert int(m3.count) == 1


def test_schedules():
  s = make_schedule("window", 4)
  assert s.push.all() and s.adapt.all() and s.predict.all()
  s = make_schedule("none", 4)
  assert not s.adapt.any()
  s = make_schedule("offline", 3, offline_iters=5)
  assert len(s) == 3 + 5 + 3 and s.adapt.sum() == 5 and s.predict[-3:].all() and not s.predict[:-3].any()
  s = make_schedule("warmup_freeze", 20, warmup_fraction=0.1, warmup_passes=5)
  assert len(s) == 2 * 5 + 20
  assert list(s.frame_index[:4]) == [0, 1, 0, 1] and not s.adapt[-20:].any()
  assert warmup_frames(5, 0.1) == 1
  with pytest.raises(ValueError, match=r"warm-up fraction must be in \(0, 1\]"):
    make_schedule("warmup_freeze", 10, warmup_fraction=0.0)
  with pytest.raises(ValueError, match="warm-up fraction"):
    warmup_frames(10, 1.5)
  with pytest.raises(ValueError, match="at least one frame"):
    make_schedule("window", 0)
  with pytest.raises(ValueError, match="unknown memory mode"):
    make_schedule("sometimes", 3)
  with pytest.raises(ValueError, match="k must be >= 1|window .* must be >= 1"):
    StepConfig(window=0)


def _toy(loss_scale=1.0):
  """A linear model on mean pixel values: fast, and enough to test the step's logic."""
  variables = {"params": {"enc": {"w": jnp.ones((3,))}, "head": {"b": jnp.zeros((3,))}},
               "batch_stats": {"s": jnp.zeros(())}}

  def loss_fn(tr, fr, batch, key):
    x = batch.astype(jnp.float32).mean((1, 2))  # B x 3
    w = tr["params"]["enc"]["w"] if "enc" in tr.get("params", {}) else fr["params"]["enc"]["w"]
    return loss_scale * jnp.mean((x * w - 1.0) ** 2), fr

  def predict_fn(tr, fr, frame):
    w = tr["params"]["enc"]["w"] if "enc" in tr.get("params", {}) else fr["params"]["enc"]["w"]
    return (frame.astype(jnp.float32) * w).sum(-1).astype(jnp.int32)
  return variables, loss_fn, predict_fn


def test_frozen_leaves_hold_no_optimizer_state():
  variables, loss_fn, predict_fn = _toy()
  tr, fr = split_params(variables, lambda p: p[:2] == ("params", "head"))
  learner = Learner(loss_fn=loss_fn, predict_fn=predict_fn, optimizer=optax.adam(1e-2))
  st = init_state(learner, StepConfig(), trainable=tr, frozen=fr,
                  frame_HWC=jnp.zeros((2, 2, 3), jnp.uint8), key=jax.random.key(0))
  shapes = [x.shape for x in jax.tree.leaves(st.opt_state)]
  assert (3,) in shapes and len([s for s in shapes if s == (3,)]) == 2  # mu, nu of head/b only
  assert "enc" not in str(jax.tree_util.tree_structure(st.opt_state))


def _run(learner, cfg, frames, mode="window"):
  tr, fr = split_params(_toy()[0], lambda p: p[0] == "params")
  st = init_state(learner, cfg, trainable=tr, frozen=fr, frame_HWC=frames[0], key=jax.random.key(0))
  s = make_schedule(mode, len(frames))
  ticks = Tick(frame_HWC=frames[s.frame_index], push=s.push, adapt=s.adapt, predict=s.predict)
  return jax.jit(lambda st, t: jax.lax.scan(make_step(learner, cfg), st, t))(st, ticks)


def test_non_finite_loss_is_skipped_and_counted():
  variables, loss_fn, predict_fn = _toy()

  def nan_on_bright(tr, fr, batch, key):
    loss, fr = loss_fn(tr, fr, batch, key)
    return jnp.where(batch.max() > 200, jnp.nan, loss), fr

  frames = np.full((4, 2, 2, 3), 10, np.uint8)
  frames[2] = 250
  learner = Learner(loss_fn=nan_on_bright, predict_fn=predict_fn, optimizer=optax.sgd(1e-4))
  st, out = _run(learner, StepConfig(window=1), jnp.asarray(frames), mode="implicit")
  assert int(st.skipped) == 1
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(st.trainable))
  assert np.asarray(out["adapted"]).all()


def test_reset_mode_restarts_from_anchor_each_frame():
  variables, loss_fn, predict_fn = _toy()
  learner = Learner(loss_fn=loss_fn, predict_fn=predict_fn, optimizer=optax.sgd(1e-5))
  frames = jnp.asarray(np.random.default_rng(0).integers(0, 255, (3, 2, 2, 3), dtype=np.uint8))
  st_reset, _ = _run(learner, StepConfig(carry_params=False, window=1), frames, mode="reset")
  st_one, _ = _run(learner, StepConfig(carry_params=False, window=1), frames[2:], mode="reset")
  # After a reset run, the weights are those of one step on the last frame alone.
  np.testing.assert_allclose(st_reset.trainable["params"]["enc"]["w"],
                             st_one.trainable["params"]["enc"]["w"], rtol=1e-6)
  st_carry, _ = _run(learner, StepConfig(carry_params=True, window=1), frames, mode="implicit")
  assert not np.allclose(st_carry.trainable["params"]["enc"]["w"], st_one.trainable["params"]["enc"]["w"])


def test_none_mode_leaves_parameters_untouched():
  variables, loss_fn, predict_fn = _toy()
  learner = Learner(loss_fn=loss_fn, predict_fn=predict_fn, optimizer=optax.sgd(1.0))
  frames = jnp.ones((3, 2, 2, 3), jnp.uint8)
  st, out = _run(learner, StepConfig(steps_per_frame=0), frames, mode="none")
  np.testing.assert_array_equal(st.trainable["params"]["enc"]["w"], np.ones(3))
  assert not np.asarray(out["adapted"]).any()
