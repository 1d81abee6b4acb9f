"""The per-tick step of online TTT: push to memory, adapt, predict.

One pure function serves every memory mode of the papers; the mode is a
configuration (`StepConfig`) plus a per-tick schedule of flags (`Tick`, see
`schedule.py`). The engine knows no model and no loss: a method supplies a
`Learner` (loss, predict, optimizer).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from ttt_jax.engine import memory as mem_lib
from ttt_jax.engine.state import TTTState

PyTree = Any
# loss_fn(trainable, frozen, batch_BHWC, key) -> (scalar loss, new frozen)
LossFn = Callable[[PyTree, PyTree, jax.Array, jax.Array], tuple[jax.Array, PyTree]]
# predict_fn(trainable, frozen, frame_HWC) -> labels_HW int32
PredictFn = Callable[[PyTree, PyTree, jax.Array], jax.Array]
# reset_fn(trainable, anchor, frozen, frame_HWC) -> bool scalar: restore the anchor
ResetFn = Callable[[PyTree, PyTree, PyTree, jax.Array], jax.Array]
# post_update_fn(trainable, frozen, anchor, key) -> (trainable, frozen), after each
# optimizer step: sees the updated parameters (e.g. a momentum copy kept in `frozen`
# follows them, as PyTorch loops update their EMA after `optimizer.step()`).
PostUpdateFn = Callable[[PyTree, PyTree, PyTree, jax.Array], tuple[PyTree, PyTree]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Learner:
  """What a method plugs into the engine.

  A recurrent predictor (one that looks at earlier frames, e.g. DiTTA's temporal
  add-on) sets `predict_carry_init(frame_HWC) -> carry`; its `predict_fn` then is
  `(trainable, frozen, frame_HWC, carry) -> (labels_HW, carry)` and the carry
  lives in `TTTState.pred_carry`, advanced only on predicting ticks.
  """
  loss_fn: LossFn
  predict_fn: PredictFn
  optimizer: optax.GradientTransformation
  reset_fn: ResetFn | None = None
  post_update_fn: PostUpdateFn | None = None
  predict_carry_init: Callable[[jax.Array], PyTree] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepConfig:
  """Static settings of the step.

  Attributes:
    carry_params: implicit memory; False restores the anchor before each adaptation.
    window: explicit memory size k (frames kept; 1 = the current frame only).
    steps_per_frame: optimizer steps per adapting tick.
    batch_size: frames drawn with replacement from the window per step.
    reset_opt_state: rebuild the optimizer state every tick (the reference does).
    ema_decay: keep an EMA of the trainable parameters with this decay, or None.
    sampling: how a batch is drawn from the window ('iid' or 'balanced', see
      `memory.sample_indices`).
  """
  carry_params: bool = True
  window: int = 1
  steps_per_frame: int = 1
  batch_size: int = 1
  reset_opt_state: bool = True
  ema_decay: float | None = None
  sampling: str = "iid"

  def __post_init__(self):
    if self.sampling not in mem_lib.SAMPLINGS:
      raise ValueError(f"sampling must be one of {mem_lib.SAMPLINGS}, got {self.sampling!r}")
    if self.window < 1:
      raise ValueError(f"window (memory size k) must be >= 1, got {self.window}")
    if self.steps_per_frame < 0:
      raise ValueError(f"steps_per_frame must be >= 0, got {self.steps_per_frame}")
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@struct.dataclass
class Tick:
  """One scheduled tick: a frame and what to do with it (flags are bool scalars)."""
  frame_HWC: jax.Array
  push: jax.Array
  adapt: jax.Array
  predict: jax.Array


def init_state(learner: Learner, cfg: StepConfig, *, trainable: PyTree, frozen: PyTree,
               frame_HWC: jax.Array, key: jax.Array) -> TTTState:
  """The state before the first frame. `frame_HWC` gives the frame shape and dtype.

  Every array is a fresh copy: the drivers donate the state, and the caller's
  parameters must survive to start the next video.
  """
  copy = lambda t: jax.tree.map(lambda x: jnp.array(x, copy=True), t)
  ema = copy(trainable) if cfg.ema_decay is not None else None
  return TTTState(
      trainable=copy(trainable), frozen=copy(frozen), anchor=copy(trainable),
      opt_state=learner.optimizer.init(trainable),
      memory=mem_lib.empty_memory(cfg.window, jnp.asarray(frame_HWC)),
      ema=ema, step=jnp.zeros((), jnp.int32), key=key,
      skipped=jnp.zeros((), jnp.int32), resets=jnp.zeros((), jnp.int32),
      pred_carry=(learner.predict_carry_init(jnp.asarray(frame_HWC))
                  if learner.predict_carry_init is not None else None))


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _select(pred, a, b):
  return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def make_step(learner: Learner, cfg: StepConfig):
  """Returns `step(state, tick) -> (state, out)`, pure and jit/scan/vmap-able.

  `out` has `labels_HW` (int32; meaningful where `tick.predict`), `loss` (mean
  loss of this tick's steps; 0 when not adapting) and `adapted` (bool).
  """
  opt = learner.optimizer

  def adapt(args):
    trainable, frozen, opt_state, skipped, memory, key, anchor = args

    def one_update(carry, key):
      trainable, frozen, opt_state, skipped = carry
      k_batch, k_loss, k_post = jax.random.split(key, 3)
      batch = mem_lib.sample(memory, k_batch, cfg.batch_size, cfg.sampling)
      (loss, new_frozen), grads = jax.value_and_grad(learner.loss_fn, has_aux=True)(
          trainable, frozen, batch, k_loss)
      updates, new_opt = opt.update(grads, opt_state, trainable)
      new_tr = optax.apply_updates(trainable, updates)
      if learner.post_update_fn is not None:
        new_tr, new_frozen = learner.post_update_fn(new_tr, new_frozen, anchor, k_post)
      ok = jnp.isfinite(loss) & _all_finite(grads)
      # A non-finite loss never reaches the carried parameters: skip and count.
      carry = (_select(ok, new_tr, trainable), _select(ok, new_frozen, frozen),
               _select(ok, new_opt, opt_state), skipped + (~ok).astype(jnp.int32))
      return carry, jnp.where(ok, loss, 0.0)

    keys = jax.random.split(key, cfg.steps_per_frame)
    (trainable, frozen, opt_state, skipped), losses = jax.lax.scan(
        one_update, (trainable, frozen, opt_state, skipped), keys)
    return trainable, frozen, opt_state, skipped, jnp.mean(losses).astype(jnp.float32)

  def no_adapt(args):
    trainable, frozen, opt_state, skipped, _, _, _ = args
    return trainable, frozen, opt_state, skipped, jnp.zeros_like(skipped, jnp.float32)

  def step(state: TTTState, tick: Tick):
    key, k_adapt = jax.random.split(state.key)
    memory = mem_lib.push(state.memory, tick.frame_HWC, tick.push)
    active = tick.adapt & (memory.count > 0) & (cfg.steps_per_frame > 0)
    trainable = state.trainable
    if not cfg.carry_params:
      trainable = _select(active, state.anchor, trainable)
    resets = state.resets
    if learner.reset_fn is not None:
      r = tick.adapt & learner.reset_fn(trainable, state.anchor, state.frozen, tick.frame_HWC)
      trainable = _select(r, state.anchor, trainable)
      resets = resets + r.astype(jnp.int32)
    opt_state = state.opt_state
    if cfg.reset_opt_state:
      opt_state = _select(active, opt.init(trainable), opt_state)
    args = (trainable, state.frozen, opt_state, state.skipped, memory, k_adapt, state.anchor)
    if cfg.steps_per_frame > 0:
      trainable, frozen, opt_state, skipped, loss = jax.lax.cond(active, adapt, no_adapt, args)
    else:  # statically predict-only: no update branch to compile
      trainable, frozen, opt_state, skipped, loss = no_adapt(args)
    ema = state.ema
    if ema is not None:
      ema = _select(active, optax.incremental_update(trainable, ema, 1.0 - cfg.ema_decay), ema)
    no_labels = jnp.zeros(tick.frame_HWC.shape[:2], jnp.int32)
    pred_carry = state.pred_carry
    if learner.predict_carry_init is None:
      labels = jax.lax.cond(
          tick.predict, lambda: learner.predict_fn(trainable, frozen, tick.frame_HWC).astype(jnp.int32),
          lambda: no_labels)
    else:
      def recurrent():
        lab, c = learner.predict_fn(trainable, frozen, tick.frame_HWC, pred_carry)
        return lab.astype(jnp.int32), c
      labels, pred_carry = jax.lax.cond(tick.predict, recurrent, lambda: (no_labels, pred_carry))
    new = state.replace(trainable=trainable, frozen=frozen, opt_state=opt_state, memory=memory,
                        ema=ema, step=state.step + 1, key=key, skipped=skipped, resets=resets,
                        pred_carry=pred_carry)
    return new, dict(labels_HW=labels, loss=loss, adapted=active)

  return step
