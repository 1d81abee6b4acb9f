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


def _adapted(*overrides):
  """Trainable parameters after online TTT-MAE on a short video (tiny random SegFormer),
  and the runner. Mask ratio 0, no stochastic depth and whole-frame crops make the
  loss draw nothing random, so split and unsplit batches must give one update."""
  r, _ = tiny_runner("online_ttt_mae", "method.mae.mask_ratio=0.0", "method.mae.drop_path=False",
                     "method.batch_size=4", *overrides)
  _, ticks, state = r._prepare("v", random_frames(t=4), 0, "scan")  # noqa: SLF001 - the final state
  final, outs = jax.jit(r._jitted["scan"])(state, ticks)  # noqa: SLF001
  assert np.asarray(outs["adapted"])[:4].all()  # ticks past the video are padding
  return final.trainable, r


def test_micro_batched_ttt_mae_update_matches_the_unsplit_batch():
  whole, r1 = _adapted()
  split, r2 = _adapted("method.micro_batches=2")
  assert r1.plan.step_config.micro_batches == 1 and r2.plan.step_config.micro_batches == 2
  moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in
              zip(jax.tree.leaves(whole), jax.tree.leaves(r1.plan.variables.trainable)))
  assert moved > 1e-4, "the run must actually adapt for the comparison to mean anything"
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(whole), jax.tree.leaves(split)):
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
