"""Memory modes as schedules and runtime settings; the step's parameter subset,
skip rule, memory window and EMA."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ttt_jax.engine import memory as mem_lib
from ttt_jax.engine.schedule import make_schedule, mode_settings, warmup_frames
from ttt_jax.engine.state import split_params, split_variables
from ttt_jax.engine.step import Learner, StepConfig, Tick, init_state, make_hparams, make_step


def test_ring_buffer_keeps_last_k_and_samples_valid_slots():
  m = mem_lib.empty_memory(3, jnp.zeros((1, 1, 1), jnp.uint8))
  for v in range(1, 6):
    m = mem_lib.push(m, jnp.full((1, 1, 1), v, jnp.uint8))
  assert int(m.count) == 3 and int(m.total) == 5
  assert sorted(np.asarray(m.items).ravel().tolist()) == [3, 4, 5]
  m2 = mem_lib.push(mem_lib.empty_memory(4, jnp.zeros((1,), jnp.float32)), jnp.ones((1,)) * 7)
  draws = mem_lib.sample(m2, jax.random.key(0), 64)
  assert np.all(np.asarray(draws) == 7)  # only the one valid slot, with replacement
  m3 = mem_lib.push(m2, jnp.ones((1,)) * 9, enabled=False)
  assert int(m3.count) == 1 and int(m3.total) == 1


def test_memory_holds_any_pytree():
  ex = {"frame": jnp.zeros((2, 2, 3), jnp.uint8), "has_prev": jnp.zeros((), bool)}
  m = mem_lib.empty_memory(2, ex)
  m = mem_lib.push(m, {"frame": jnp.full((2, 2, 3), 5, jnp.uint8), "has_prev": jnp.ones((), bool)})
  b = mem_lib.sample(m, jax.random.key(0), 3)
  assert b["frame"].shape == (3, 2, 2, 3) and b["has_prev"].shape == (3,)
  assert np.all(np.asarray(b["frame"]) == 5) and np.asarray(b["has_prev"]).all()


@pytest.mark.parametrize("scheme", ["iid", "balanced"])
def test_a_window_in_a_larger_memory_draws_what_a_memory_of_that_size_draws(scheme):
  """The runtime window: a window of w in a 16-slot memory gives the same draws, and
  the same items, as a w-slot memory (iid: for any w; balanced: for w = the size)."""
  for w in ((1, 3, 5) if scheme == "iid" else (5,)):
    small = mem_lib.empty_memory(w, jnp.zeros((), jnp.int32))
    big = mem_lib.empty_memory(16 if scheme == "iid" else 5, jnp.zeros((), jnp.int32))
    for t in range(9):
      small = mem_lib.push(small, jnp.asarray(t, jnp.int32))
      big = mem_lib.push(big, jnp.asarray(t, jnp.int32))
      for s in range(3):
        a = mem_lib.sample(small, jax.random.key(s), 7, scheme)
        b = mem_lib.sample(big, jax.random.key(s), 7, scheme, window=jnp.asarray(w))
        np.testing.assert_array_equal(a, b, err_msg=f"window {w}, after frame {t}")
        assert int(np.min(b)) >= max(0, t - w + 1)         # only the last w frames


def test_schedules_and_mode_settings():
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
  want = {"reset": (False, 1), "implicit": (True, 1), "window": (True, 16), "explicit": (False, 16),
          "offline": (True, 48), "warmup_freeze": (True, 16), "none": (True, 1)}
  for mode, (carry, k) in want.items():
    assert mode_settings(mode, 16, 48) == {"carry_params": carry, "window": k}, mode
  with pytest.raises(ValueError, match=r"warm-up fraction must be in \(0, 1\]"):
    make_schedule("warmup_freeze", 10, warmup_fraction=0.0)
  with pytest.raises(ValueError, match="warm-up fraction"):
    warmup_frames(10, 1.5)
  with pytest.raises(ValueError, match="at least one frame"):
    make_schedule("window", 0)
  with pytest.raises(ValueError, match="unknown memory mode"):
    make_schedule("sometimes", 3)
  with pytest.raises(ValueError, match="memory_slots must be >= 1"):
    StepConfig(memory_slots=0)
  with pytest.raises(ValueError, match=r"window 3 must be in \[1, memory_slots=2\]"):
    make_hparams(window=3, cfg=StepConfig(memory_slots=2))


def _toy():
  """A linear model on mean pixel values: fast, and enough to test the step's logic."""
  variables = {"params": {"enc": {"w": jnp.ones((3,))}, "head": {"b": jnp.zeros((3,))}},
               "batch_stats": {"s": jnp.zeros(())}}

  def w_of(tr, ctx):
    return ctx.variables(tr)["params"]["enc"]["w"]

  def loss_fn(tr, ctx, batch, key):
    x = batch.astype(jnp.float32).mean((1, 2))  # B x 3
    return jnp.mean((x * w_of(tr, ctx)[None] - 1.0) ** 2), (ctx.stats, ctx.method_state)

  def predict_fn(tr, ctx, frame):
    return (frame.astype(jnp.float32) * w_of(tr, ctx)[None, None]).sum(-1).astype(jnp.int32)
  return variables, loss_fn, predict_fn


def _learner(loss_fn, predict_fn, lr=1e-2, **kw):
  return Learner(loss_fn=loss_fn, predict_fn=predict_fn, optimizer=lambda hp: optax.sgd(hp["lr"]), **kw)


def test_split_variables_by_what_updates_them():
  tr, stats, fr = split_variables(_toy()[0], ("params/head/.*",))
  assert set(tr["params"]) == {"head"} and set(fr["params"]) == {"enc"} and set(stats) == {"batch_stats"}
  tr, _, fr = split_variables(_toy()[0], ("params/.*",))
  assert fr == {}
  with pytest.raises(ValueError, match="not a valid regular expression"):
    split_variables(_toy()[0], ("params/(",))


def test_frozen_leaves_hold_no_optimizer_state():
  variables, loss_fn, predict_fn = _toy()
  tr, stats, fr = split_variables(variables, ("params/head/.*",))
  learner = Learner(loss_fn=loss_fn, predict_fn=predict_fn, optimizer=lambda hp: optax.adam(1e-2))
  st = init_state(learner, StepConfig(), trainable=tr, stats=stats, frozen=fr, hparams=make_hparams(),
                  example=jnp.zeros((2, 2, 3), jnp.uint8), key=jax.random.key(0))
  shapes = [x.shape for x in jax.tree.leaves(st.opt_state)]
  assert (3,) in shapes and len([s for s in shapes if s == (3,)]) == 2  # mu, nu of head/b only
  assert "enc" not in str(jax.tree_util.tree_structure(st.opt_state))


def _run(learner, frames, mode="window", cfg=StepConfig(memory_slots=4, max_steps=2), lr=1e-2, window=4, **hp):
  tr, stats, fr = split_variables(_toy()[0], ("params/.*",))
  st = init_state(learner, cfg, trainable=tr, stats=stats, frozen=fr,
                  hparams=make_hparams(**{**mode_settings(mode, window, len(frames)), **hp}, lr=lr, cfg=cfg),
                  example=frames[0], key=jax.random.key(0))
  s = make_schedule(mode, len(frames))
  ticks = Tick(data=frames[s.frame_index], push=s.push, adapt=s.adapt, predict=s.predict)
  return jax.jit(lambda st, t: jax.lax.scan(make_step(learner, cfg), st, t))(st, ticks)


def test_non_finite_loss_is_skipped_and_counted():
  variables, loss_fn, predict_fn = _toy()

  def nan_on_bright(tr, ctx, batch, key):
    loss, aux = loss_fn(tr, ctx, batch, key)
    return jnp.where(batch.max() > 200, jnp.nan, loss), aux

  frames = np.full((4, 2, 2, 3), 10, np.uint8)
  frames[2] = 250
  st, out = _run(_learner(nan_on_bright, predict_fn), jnp.asarray(frames), mode="implicit", lr=1e-4)
  assert int(st.skipped) == 1
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(st.trainable))
  assert np.asarray(out["adapted"]).all()


def test_reset_mode_restarts_from_anchor_each_frame():
  variables, loss_fn, predict_fn = _toy()
  learner = _learner(loss_fn, predict_fn)
  frames = jnp.asarray(np.random.default_rng(0).integers(0, 255, (3, 2, 2, 3), dtype=np.uint8))
  st_reset, _ = _run(learner, frames, mode="reset", lr=1e-5)
  st_one, _ = _run(learner, frames[2:], mode="reset", lr=1e-5)
  # After a reset run, the weights are those of one step on the last frame alone.
  np.testing.assert_allclose(st_reset.trainable["params"]["enc"]["w"],
                             st_one.trainable["params"]["enc"]["w"], rtol=1e-6)
  st_carry, _ = _run(learner, frames, mode="implicit", lr=1e-5)
  assert not np.allclose(st_carry.trainable["params"]["enc"]["w"], st_one.trainable["params"]["enc"]["w"])


def test_runtime_steps_and_lr_match_a_loop_by_hand():
  """Two steps per frame at a runtime lr: the SGD updates by hand, and no update with 0 steps."""
  variables, loss_fn, predict_fn = _toy()
  learner = _learner(loss_fn, predict_fn)
  frames = jnp.asarray(np.random.default_rng(1).integers(0, 255, (2, 2, 2, 3), dtype=np.uint8))
  st, _ = _run(learner, frames, mode="implicit", lr=1e-5, steps=2)
  w = jnp.ones((3,))
  for f in frames:
    for _ in range(2):  # window 1: every draw is the current frame
      w = w - 1e-5 * jax.grad(lambda w: jnp.mean((f.astype(jnp.float32).mean((0, 1)) * w - 1.0) ** 2))(w)
  np.testing.assert_allclose(st.trainable["params"]["enc"]["w"], w, rtol=1e-6)
  st0, out = _run(learner, frames, mode="implicit", steps=0)
  np.testing.assert_array_equal(st0.trainable["params"]["enc"]["w"], np.ones(3))
  assert not np.asarray(out["adapted"]).any()


def test_none_mode_leaves_parameters_untouched():
  variables, loss_fn, predict_fn = _toy()
  frames = jnp.ones((3, 2, 2, 3), jnp.uint8)
  st, out = _run(_learner(loss_fn, predict_fn), frames, mode="none", lr=1.0)
  np.testing.assert_array_equal(st.trainable["params"]["enc"]["w"], np.ones(3))
  assert not np.asarray(out["adapted"]).any()


def test_ema_follows_each_optimizer_step_then_post_update_sees_it():
  """One EMA mechanism: after each step, ema = (1 - d) * new + d * ema; the post-update
  hook (CoTTA's restore) runs after it and sees it."""
  variables, loss_fn, predict_fn = _toy()
  seen = []

  def post(tr, ctx, key):
    return jax.tree.map(lambda t, e: 0.5 * t + 0.5 * e, tr, ctx.ema)  # a hook that reads the EMA

  learner = _learner(loss_fn, predict_fn, post_update_fn=post)
  frames = jnp.asarray(np.random.default_rng(2).integers(0, 255, (2, 2, 2, 3), dtype=np.uint8))
  st, _ = _run(learner, frames, mode="implicit", cfg=StepConfig(memory_slots=1, max_steps=2, ema=True), window=1,
               lr=1e-5, ema_decay=0.9)
  w = ema = jnp.ones((3,))
  for f in frames:
    w = w - 1e-5 * jax.grad(lambda w: jnp.mean((f.astype(jnp.float32).mean((0, 1)) * w - 1.0) ** 2))(w)
    ema = 0.1 * w + 0.9 * ema
    w = 0.5 * w + 0.5 * ema
  np.testing.assert_allclose(st.ema["params"]["enc"]["w"], ema, rtol=1e-6)
  np.testing.assert_allclose(st.trainable["params"]["enc"]["w"], w, rtol=1e-6)
  del seen


def test_a_trainable_mask_trains_as_the_subset_alone_would():
  """`hparams['trainable_mask']` (runs of different subsets sharing one program): the
  masked-out parameters keep their values exactly (no gradient, no AdamW decay) and the
  others follow what a run that trains only them gives, bit for bit."""
  variables = {"params": {"enc": {"w": jnp.ones((3,))}, "head": {"b": jnp.full((3,), 2.0)}}}

  def loss_fn(tr, ctx, batch, key):
    p = ctx.variables(tr)["params"]
    x = batch.astype(jnp.float32).mean((1, 2))
    return jnp.mean((x * p["enc"]["w"][None] - 1.0) ** 2) + jnp.mean(p["head"]["b"] ** 2), \
        (ctx.stats, ctx.method_state)

  learner = Learner(loss_fn=loss_fn, predict_fn=lambda tr, ctx, f: f[..., 0].astype(jnp.int32),
                    optimizer=lambda hp: optax.chain(optax.clip_by_global_norm(0.5),
                                                     optax.adamw(hp["lr"], weight_decay=0.1)))
  cfg = StepConfig(memory_slots=1, max_steps=2)
  frames = jnp.asarray(np.random.default_rng(3).integers(0, 255, (3, 2, 2, 3), dtype=np.uint8))
  s = make_schedule("implicit", 3)
  ticks = Tick(data=frames[s.frame_index], push=s.push, adapt=s.adapt, predict=s.predict)

  def run(patterns, mask=None):
    tr, stats, fr = split_variables(variables, patterns)
    hp = make_hparams(**mode_settings("implicit", 1, 3), steps=2, lr=1e-2, cfg=cfg, trainable_mask=mask)
    st = init_state(learner, cfg, trainable=tr, stats=stats, frozen=fr, hparams=hp,
                    example=frames[0], key=jax.random.key(0))
    return jax.jit(lambda st, t: jax.lax.scan(make_step(learner, cfg), st, t))(st, ticks)[0]

  alone = run(("params/enc/.*",))
  masked = run(("params/.*",), {"params": {"enc": {"w": True}, "head": {"b": False}}})
  np.testing.assert_array_equal(masked.trainable["params"]["head"]["b"], np.full(3, 2.0))
  np.testing.assert_array_equal(masked.trainable["params"]["enc"]["w"], alone.trainable["params"]["enc"]["w"])
  assert not np.allclose(alone.trainable["params"]["enc"]["w"], 1.0)   # it did train
  both = run(("params/.*",))
  assert not np.allclose(both.trainable["params"]["head"]["b"], 2.0)   # unmasked, head/b moves
  with pytest.raises(ValueError, match="trainable_mask.*structure"):
    run(("params/.*",), {"params": {"enc": {"w": True}}})
