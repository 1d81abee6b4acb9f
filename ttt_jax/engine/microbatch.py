"""Gradient accumulation over micro-batches, and the split that fits a memory budget.

Why: an adapting step's activations grow with the batch (about 1.3 GB per
864 x 480 sample for the small SegFormer on XLA:CPU), so the reference's batch
of 32 does not fit beside the model on a 24 GB machine or a B5 on one GPU. The
batch drawn from the window is cut into `M` equal micro-batches whose
gradients are summed inside the step by a `lax.scan` (only one micro-batch's
activations are alive at a time); the optimizer then takes one step, as with the
unsplit batch.

What stays the same: a loss that is a mean over samples gives the same gradient
(to float round-off) split or not. What does not: the loss is called once per
micro-batch with its own key (`fold_in(key, j)`), so random views, masks and
stochastic depth are drawn per micro-batch, the same distribution but other
draws; and statistics a loss updates (BatchNorm's running means) are threaded
through the micro-batches in turn, each seeing its micro-batch's statistics.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp

PyTree = Any
GB = 1e9
# On the CPU the process's peak resident set exceeds the step's planned buffers plus
# what is in use when the plan is made by about this much (compiling the run's
# programs, the runtime's pools): measured 1.6 and 1.8 GB with the small model at
# 864 x 480, batch 32 in 8 and 4 micro-batches (benchmarks/memory.py).
CPU_HEADROOM_GB = 1.8


def split_batch(batch: PyTree, micro_batches: int) -> PyTree:
  """Every leaf `B, ...` as `M, B / M, ...` (micro-batch `j` holds samples `j*B/M ...`)."""
  def cut(x):
    if x.shape[0] % micro_batches:
      raise ValueError(f"batch of {x.shape[0]} does not split into {micro_batches} micro-batches")
    return x.reshape(micro_batches, x.shape[0] // micro_batches, *x.shape[1:])
  return jax.tree.map(cut, batch)


def accumulated_value_and_grad(loss_fn: Callable, micro_batches: int):
  """`jax.value_and_grad(loss_fn, has_aux=True)` over micro-batches.

  Args:
    loss_fn: `(trainable, ctx, batch, key) -> (loss, (stats, method_state))`
      (`engine.step.LossFn`), a mean over the batch's samples.
    micro_batches: `M`, dividing the batch size; 1 calls `loss_fn` once, unchanged.
  Returns:
    `f(trainable, ctx, batch, key) -> ((loss, (stats, method_state)), grads)`:
    the loss and gradients are the means over the micro-batches; statistics and
    method state come from the last micro-batch, each having started from the
    previous one's.
  """
  vg = jax.value_and_grad(loss_fn, has_aux=True)
  if micro_batches == 1:
    return vg

  def f(trainable, ctx, batch, key):
    parts = split_batch(batch, micro_batches)

    def body(carry, j_part):
      grad_sum, loss_sum, stats, mstate = carry
      j, part = j_part
      (loss, (stats, mstate)), g = vg(trainable, ctx.replace(stats=stats, method_state=mstate),
                                      part, jax.random.fold_in(key, j))
      grad_sum = jax.tree.map(jnp.add, grad_sum, g)
      return (grad_sum, loss_sum + loss, stats, mstate), None

    zeros = jax.tree.map(jnp.zeros_like, trainable)
    init = (zeros, jnp.zeros((), jnp.float32), ctx.stats, ctx.method_state)
    (grad_sum, loss_sum, stats, mstate), _ = jax.lax.scan(
        body, init, (jnp.arange(micro_batches), parts))
    scale = 1.0 / micro_batches
    grads = jax.tree.map(lambda g: (g * scale).astype(g.dtype), grad_sum)
    return (loss_sum * scale, (stats, mstate)), grads
  return f


def compiled_step(loss_fn: Callable, trainable: PyTree, ctx, sample: jax.ShapeDtypeStruct | PyTree,
                  size: int) -> jax.stages.Compiled:
  """One loss-and-gradient call on `size` samples, compiled from shapes alone
  (nothing runs). `sample` is one sample's shapes."""
  batch = jax.tree.map(lambda s: jax.ShapeDtypeStruct((size, *s.shape), s.dtype), sample)
  key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
  shapes = lambda t: jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), t)
  return jax.jit(jax.value_and_grad(loss_fn, has_aux=True)).lower(
      shapes(trainable), shapes(ctx), batch, key).compile()


def step_bytes(loss_fn: Callable, trainable: PyTree, ctx, sample: jax.ShapeDtypeStruct | PyTree,
               size: int) -> int:
  """Device bytes XLA plans for one loss-and-gradient call on `size` samples
  (`planned_bytes` of `compiled_step`)."""
  return planned_bytes(compiled_step(loss_fn, trainable, ctx, sample, size))


def planned_bytes(compiled: jax.stages.Compiled) -> int:
  """Arguments, outputs and temporaries of a compiled program (its
  `memory_analysis()`), buffers an output aliases counted once. Raises
  RuntimeError on a backend that reports no memory analysis."""
  m = compiled.memory_analysis()
  if m is None:
    raise RuntimeError(f"this backend ({jax.default_backend()}) reports no memory analysis; "
                       "set the micro-batches by hand instead of a memory budget")
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


def measure(loss_fn: Callable, trainable: PyTree, ctx, sample: PyTree) -> tuple[float, float]:
  """`(fixed_gb, per_sample_gb)` of an adapting step on this loss.

  The bytes of a loss-and-gradient call are affine in the micro-batch size
  (weights and their gradients, plus activations per sample): two compilations,
  of 1 and 2 samples, give both terms (`step_bytes`). On top come what is in use
  already (`in_use_gb`), three more copies of the trainable parameters (AdamW's
  two moments, the anchor) and, on the CPU, `CPU_HEADROOM_GB`.
  """
  one, two = (step_bytes(loss_fn, trainable, ctx, sample, s) for s in (1, 2))
  per_sample = max(two - one, 0)
  params = sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(trainable))
  headroom = CPU_HEADROOM_GB if jax.default_backend() == "cpu" else 0.0
  return in_use_gb() + headroom + (max(one - per_sample, 0) + 3 * params) / GB, per_sample / GB


def in_use_gb() -> float:
  """Memory in use before the step runs: the device allocator's bytes in use on a
  GPU/TPU; on the CPU the process's resident set (the runtime, compiled programs
  and data, about 2.4 GB for a video run), read from /proc (0 where there is none)."""
  if jax.default_backend() != "cpu":
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("bytes_in_use", 0) / GB
  try:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / GB
  except (OSError, ValueError, IndexError):
    return 0.0


def choose_micro_batches(fixed_gb: float, per_sample_gb: float, batch_size: int, budget_gb: float,
                         *, name: str = "memory budget") -> tuple[int, dict]:
  """The fewest micro-batches `M` (dividing `batch_size`) with
  `fixed_gb + per_sample_gb * batch_size / M <= budget_gb`; returns `(M, figures)`.
  Raises ValueError naming `name` when one sample alone exceeds the budget."""
  est = lambda size: fixed_gb + per_sample_gb * size
  info = {"per_sample_gb": per_sample_gb, "fixed_gb": fixed_gb, "budget_gb": budget_gb}
  if est(1) > budget_gb:
    raise ValueError(f"{name} of {budget_gb:g} GB is too small for one sample: a step on one "
                     f"sample needs about {est(1):.3g} GB ({fixed_gb:.3g} fixed + "
                     f"{per_sample_gb:.3g} per sample)")
  m = next(m for m in range(1, batch_size + 1)
           if batch_size % m == 0 and est(batch_size // m) <= budget_gb)
  return m, {**info, "micro_batches": m, "estimate_gb": est(batch_size // m)}


def fit_micro_batches(loss_fn: Callable, trainable: PyTree, ctx, sample: PyTree, batch_size: int,
                      budget_gb: float, *, name: str = "memory budget") -> tuple[int, dict]:
  """The fewest micro-batches whose step fits `budget_gb` (`measure`, then
  `choose_micro_batches`): `(micro_batches, figures in GB)`."""
  fixed, per_sample = measure(loss_fn, trainable, ctx, sample)
  return choose_micro_batches(fixed, per_sample, batch_size, budget_gb, name=name)
