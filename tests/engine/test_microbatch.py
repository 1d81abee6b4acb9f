"""Micro-batched adapting steps: the same update as the unsplit batch, and the split
chosen from a memory budget."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttt_jax.engine.microbatch import accumulated_value_and_grad, choose_micro_batches, measure
from ttt_jax.engine.state import Context
from ttt_jax.engine.step import StepConfig
from tests.helpers import random_frames, tiny_runner


def _ctx(stats=None):
  return Context(frozen={}, stats=stats or {}, method_state={}, ema=None, anchor={}, hparams={})


def _regression(trainable, ctx, batch, key):
  """A mean over samples; the statistics count the samples seen (threaded through)."""
  pred = batch["x"] @ trainable["w"] + trainable["b"][None]
  stats = {"seen": ctx.stats["seen"] + batch["x"].shape[0]}
  return jnp.mean((pred - batch["y"]) ** 2), (stats, ctx.method_state)


def test_accumulated_gradient_is_the_unsplit_batch_gradient():
  rng = np.random.default_rng(0)
  tr = {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), "b": jnp.zeros((3,), jnp.float32)}
  batch = {"x": jnp.asarray(rng.normal(size=(8, 5)), jnp.float32),
           "y": jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)}
  ctx = _ctx({"seen": jnp.zeros((), jnp.int32)})
  (l1, (s1, _)), g1 = accumulated_value_and_grad(_regression, 1)(tr, ctx, batch, jax.random.key(0))
  for m in (2, 4, 8):
    (lm, (sm, _)), gm = jax.jit(accumulated_value_and_grad(_regression, m))(tr, ctx, batch, jax.random.key(0))
    np.testing.assert_allclose(lm, l1, rtol=1e-6, err_msg=f"loss, {m} micro-batches")
    for k in g1:
      np.testing.assert_allclose(gm[k], g1[k], rtol=1e-5, atol=1e-7, err_msg=f"grad {k}, {m} micro-batches")
    assert int(sm["seen"]) == int(s1["seen"]) == 8, "statistics must pass through every micro-batch"
  with pytest.raises(ValueError, match="does not split into 3"):
    accumulated_value_and_grad(_regression, 3)(tr, ctx, batch, jax.random.key(0))


def test_step_config_rejects_micro_batches_that_do_not_divide_the_batch():
  with pytest.raises(ValueError, match="micro_batches must divide batch_size=32; got 5"):
    StepConfig(batch_size=32, micro_batches=5)


def test_engine_step_with_micro_batches_takes_the_unsplit_step():
  """Online runs of the engine (window 4, batch 4, 2 SGD steps per frame) with the
  batch whole and in 2 or 4 micro-batches end with the same weights."""
  from tests.engine.test_schedule_and_step import _learner, _run, _toy
  _, loss_fn, predict_fn = _toy()
  frames = jnp.asarray(np.random.default_rng(4).integers(0, 255, (5, 2, 2, 3), dtype=np.uint8))
  runs = {m: _run(_learner(loss_fn, predict_fn), frames, lr=1e-5,
                  cfg=StepConfig(memory_slots=4, max_steps=2, batch_size=4, micro_batches=m))[0]
          for m in (1, 2, 4)}
  w1 = runs[1].trainable["params"]["enc"]["w"]
  assert not np.allclose(w1, 1.0), "the run must adapt"
  for m in (2, 4):
    np.testing.assert_allclose(runs[m].trainable["params"]["enc"]["w"], w1, rtol=1e-6, err_msg=f"{m} micro-batches")


def test_micro_batched_ttt_mae_gradient_is_the_unsplit_one():
  """TTT-MAE's loss on a tiny random SegFormer, batch 4 whole and in 2 micro-batches.
  Mask ratio 0, no stochastic depth and whole-frame crops draw nothing random, so
  the gradients must agree (the loss is a mean over samples)."""
  r, _ = tiny_runner("online_ttt_mae", "method.mae.mask_ratio=0.0", "method.mae.drop_path=False")
  plan, v = r.plan, r.plan.variables
  ctx = Context(frozen=v.frozen, stats=v.stats, method_state=v.method_state, ema=None,
                anchor=v.trainable, hparams=plan.hparams(6))
  batch = jnp.asarray(random_frames(t=4, seed=5))
  (l1, _), g1 = jax.jit(accumulated_value_and_grad(plan.learner.loss_fn, 1))(v.trainable, ctx, batch, jax.random.key(0))
  (l2, _), g2 = jax.jit(accumulated_value_and_grad(plan.learner.loss_fn, 2))(v.trainable, ctx, batch, jax.random.key(0))
  np.testing.assert_allclose(l2, l1, rtol=1e-5)
  assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g1)) > 1e-4, "a real gradient"
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))


def test_memory_budget_picks_the_fewest_micro_batches_that_fit():
  # 1 GB fixed + 0.5 GB per sample, batch 8: 5 GB fits the whole batch, 3 GB four
  # samples (2 micro-batches), 2.2 GB two (4), 1.6 GB one (8), 1.4 GB nothing.
  for budget, m in ((5.0, 1), (4.9, 2), (3.0, 2), (2.2, 4), (1.6, 8)):
    got, info = choose_micro_batches(1.0, 0.5, 8, budget)
    assert got == m and info["estimate_gb"] <= budget, (budget, got, info)
  with pytest.raises(ValueError, match=r"method.memory_budget_gb of 1.4 GB is too small for one sample"):
    choose_micro_batches(1.0, 0.5, 8, 1.4, name="method.memory_budget_gb")


def test_step_memory_is_measured_from_the_compiled_program():
  r, _ = tiny_runner("online_ttt_mae", "method.batch_size=8")
  plan, v = r.plan, r.plan.variables
  ctx = Context(frozen=v.frozen, stats=v.stats, method_state=v.method_state, ema=None,
                anchor=v.trainable, hparams=plan.hparams(6))
  frame = jax.ShapeDtypeStruct((32, 32, 3), jnp.uint8)
  fixed, per_sample = measure(plan.learner.loss_fn, v.trainable, ctx, frame)
  params = sum(x.size * 4 for x in jax.tree.leaves(v.trainable)) / 1e9
  # The fixed part holds at least the weights, their gradients and AdamW's moments; a
  # 32 x 32 sample's activations weigh more than its 3 KB of pixels.
  assert fixed >= 4 * params and per_sample > 32 * 32 * 3 / 1e9, (fixed, per_sample, params)


def test_memory_budget_in_the_config_sets_the_step():
  r, _ = tiny_runner("online_ttt_mae", "method.batch_size=8", "method.memory_budget_gb=1000.0")
  assert r.plan.step_config.micro_batches == 1
  with pytest.raises(ValueError, match="method.memory_budget_gb of 1e-06 GB is too small"):
    tiny_runner("online_ttt_mae", "method.batch_size=8", "method.memory_budget_gb=0.000001")
