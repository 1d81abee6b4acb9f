"""The per-tick step of online TTT: push to memory, adapt, predict.

One pure function serves every memory mode of the papers; the mode is a few
runtime settings (`TTTState.hparams`) plus a per-tick schedule of flags (`Tick`,
see `schedule.py`). The engine knows no model, no loss and no data layout: a
method supplies a `Learner`, and a tick's data is any pytree of arrays.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import optax
from flax import struct

from ttt_jax.engine import memory as mem_lib
from ttt_jax.engine.microbatch import accumulated_value_and_grad
from ttt_jax.engine.state import Context, TTTState

PyTree = Any

# Runtime settings every step reads from `TTTState.hparams` (a method may add its own,
# e.g. learning rates its optimizer reads):
#   carry_params (bool)     implicit memory; False restores the anchor before adapting
#   window (int32)          explicit memory: batches come from the last `window` ticks
#   steps (int32)           optimizer steps per adapting tick (<= StepConfig.max_steps)
#   reset_opt_state (bool)  rebuild the optimizer state every adapting tick
#   ema_new, ema_old (f32)  EMA weights of the new parameters and the old copy
HPARAMS = ("carry_params", "window", "steps", "reset_opt_state", "ema_new", "ema_old")
# Optional:
#   trainable_mask (tree of bool scalars, `trainable`'s structure): the parameters this
#     run trains; the others get zero gradients and zero updates (no weight decay), so
#     runs that train different subsets of one parameter tree share one program.
MASK = "trainable_mask"


class LossFn(Protocol):
  def __call__(self, trainable: PyTree, ctx: Context, batch: PyTree, key: jax.Array
               ) -> tuple[jax.Array, tuple[PyTree, PyTree]]:
    """The adaptation loss of a batch drawn from memory.

    Args:
      trainable: the parameters being trained (differentiated).
      ctx: the rest of the state (frozen, stats, method_state, ema, anchor, hparams).
      batch: tick data with a leading batch axis `B` on every leaf.
      key: PRNG key of this update.
    Returns:
      `(loss, (stats, method_state))`: a scalar, and the updated statistics and
      method state (returned unchanged when the loss does not update them).
    """


class PredictFn(Protocol):
  def __call__(self, trainable: PyTree, ctx: Context, data: PyTree, *carry) -> Any:
    """Labels of one tick's data (e.g. `H, W` int32). A recurrent predictor
    (`Learner.predict_carry_init` set) takes the carry last and returns
    `(labels, carry)`."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Learner:
  """What a method plugs into the engine.

  Attributes:
    loss_fn: see `LossFn`; None for a method that never adapts (no update branch
      is compiled).
    predict_fn: see `PredictFn`.
    optimizer: `hparams -> optax.GradientTransformation`, called inside the step so
      learning rates can be runtime values; its `init` must not depend on them.
    reset_fn: `(trainable, ctx, data) -> bool scalar`: restore the anchor.
    post_update_fn: `(trainable, ctx, key) -> trainable`, after each optimizer
      step and the EMA (CoTTA's stochastic restore).
    predict_carry_init: `data -> carry` of a recurrent predictor (the carry lives
      in `TTTState.pred_carry`, advanced only on predicting ticks).
  """
  loss_fn: LossFn | None
  predict_fn: PredictFn
  optimizer: Callable[[PyTree], optax.GradientTransformation]
  reset_fn: Callable[[PyTree, Context, PyTree], jax.Array] | None = None
  post_update_fn: Callable[[PyTree, Context, jax.Array], PyTree] | None = None
  predict_carry_init: Callable[[PyTree], PyTree] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepConfig:
  """Static settings of the step: changing one compiles a new program.

  Attributes:
    memory_slots: explicit memory size (the largest runtime window).
    max_steps: the most optimizer steps per tick a run may ask for (`hparams['steps']`).
    batch_size: items drawn from the window per step.
    ema: keep an EMA of the trainable parameters (`TTTState.ema`).
    sampling: how a batch is drawn from the window ('iid' or 'balanced', see
      `memory.sample_indices`).
    micro_batches: the batch's gradient is accumulated over this many equal
      micro-batches, one optimizer update per step (`engine.microbatch`: less
      memory; random draws differ from the unsplit batch's).
  """
  memory_slots: int = 1
  max_steps: int = 1
  batch_size: int = 1
  ema: bool = False
  sampling: str = "iid"
  micro_batches: int = 1

  def __post_init__(self):
    if self.sampling not in mem_lib.SAMPLINGS:
      raise ValueError(f"sampling must be one of {mem_lib.SAMPLINGS}, got {self.sampling!r}")
    if self.memory_slots < 1:
      raise ValueError(f"memory_slots must be >= 1, got {self.memory_slots}")
    if self.max_steps < 0:
      raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
    if self.micro_batches < 1 or self.batch_size % self.micro_batches:
      raise ValueError(f"micro_batches must divide batch_size={self.batch_size}; "
                       f"got {self.micro_batches}")


def make_hparams(*, carry_params=True, window=1, steps=1, reset_opt_state=True, ema_decay=0.0,
                 cfg: StepConfig | None = None, trainable_mask=None, **extra) -> dict[str, jax.Array]:
  """The runtime settings of a run as arrays (see `HPARAMS`); `extra` adds a method's
  own (floats become float32). The EMA weights are computed here in float64, as a
  Python constant would be, so runtime and constant settings give the same bits.
  `trainable_mask` (a tree of bools shaped as the trainable parameters) trains only
  those marked True (see `MASK`)."""
  if cfg is not None:
    if not 1 <= window <= cfg.memory_slots:
      raise ValueError(f"window {window} must be in [1, memory_slots={cfg.memory_slots}] "
                       "(engine.max_window)")
    if not 0 <= steps <= cfg.max_steps:
      raise ValueError(f"steps per frame {steps} must be in [0, {cfg.max_steps}] "
                       "(engine.max_steps_per_frame)")
  hp = dict(carry_params=jnp.asarray(bool(carry_params)), window=jnp.asarray(window, jnp.int32),
            steps=jnp.asarray(steps, jnp.int32), reset_opt_state=jnp.asarray(bool(reset_opt_state)),
            ema_new=jnp.asarray(1.0 - ema_decay, jnp.float32),
            ema_old=jnp.asarray(1.0 - (1.0 - ema_decay), jnp.float32))
  for k, v in extra.items():
    hp[k] = jnp.asarray(v, jnp.float32 if isinstance(v, float) else None)
  if trainable_mask is not None:
    hp[MASK] = jax.tree.map(lambda m: jnp.asarray(bool(m)), trainable_mask)
  return hp


@struct.dataclass
class Tick:
  """One scheduled tick: its data (any pytree) and what to do with it (bool scalars)."""
  data: PyTree
  push: jax.Array
  adapt: jax.Array
  predict: jax.Array


def init_state(learner: Learner, cfg: StepConfig, *, trainable: PyTree, stats: PyTree = None,
               frozen: PyTree = None, method_state: PyTree = None, hparams: PyTree,
               example: PyTree, key: jax.Array) -> TTTState:
  """The state before the first tick. `example` (one tick's data) gives the memory's
  shapes and dtypes.

  Every array is a fresh copy: the drivers donate the state, and the caller's
  parameters must survive to start the next video.
  """
  copy = lambda t: jax.tree.map(lambda x: jnp.array(x, copy=True), t)
  missing = set(HPARAMS) - set(hparams)
  if missing:
    raise ValueError(f"hparams lack {sorted(missing)}; build them with make_hparams")
  if MASK in hparams and jax.tree.structure(hparams[MASK]) != jax.tree.structure(trainable):
    raise ValueError(f"hparams[{MASK!r}] must have the trainable parameters' structure; got "
                     f"{jax.tree.structure(hparams[MASK])}, expected {jax.tree.structure(trainable)}")
  return TTTState(
      trainable=copy(trainable), stats=copy(stats or {}), frozen=copy(frozen or {}),
      method_state=copy(method_state or {}), ema=copy(trainable) if cfg.ema else None,
      anchor=copy(trainable), hparams=copy(hparams),
      opt_state=learner.optimizer(hparams).init(trainable),
      memory=mem_lib.empty_memory(cfg.memory_slots, example),
      step=jnp.zeros((), jnp.int32), key=key,
      skipped=jnp.zeros((), jnp.int32), resets=jnp.zeros((), jnp.int32),
      pred_carry=(learner.predict_carry_init(example) if learner.predict_carry_init is not None
                  else None))


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _masked(mask, tree):
  """`tree` with the leaves whose scalar `mask` is False replaced by zeros (NaN-safe)."""
  return jax.tree.map(lambda m, x: jnp.where(m, x, jnp.zeros_like(x)), mask, tree)


def _select(pred, a, b):
  """`a` if the scalar `pred` else `b`, for whole pytrees. A cond, not a per-leaf
  `where`: XLA would fuse the predicate's computation into one select per leaf
  (hundreds of parameters), which costs tens of seconds of compilation on CPU."""
  return jax.lax.cond(pred, lambda: a, lambda: b)


def make_step(learner: Learner, cfg: StepConfig):
  """Returns `step(state, tick) -> (state, out)`, pure and jit/scan/vmap-able.

  `out` has `labels` (the predictor's output; zeros where not `tick.predict`),
  `loss` (mean loss of this tick's steps; 0 when not adapting) and `adapted` (bool).
  """

  value_and_grad = (accumulated_value_and_grad(learner.loss_fn, cfg.micro_batches)
                    if learner.loss_fn is not None else None)

  def update_loop(state, trainable, memory, key):
    hp = state.hparams
    opt = learner.optimizer(hp)
    # Inside the adapting branch, so ticks that only predict copy nothing: memory-less
    # modes restart from the anchor, and the optimizer state is rebuilt.
    trainable = _select(~hp["carry_params"], state.anchor, trainable)
    opt_state = _select(hp["reset_opt_state"], opt.init(trainable), state.opt_state)
    # Step i uses split(key, max_steps)[i], which does not depend on max_steps
    # (partitionable threefry), so the cap never changes a run's randomness.
    keys = jax.random.split(key, max(cfg.max_steps, 1))

    def one_update(i, carry):
      trainable, stats, mstate, ema, opt_state, skipped, loss_sum = carry
      k_batch, k_loss, k_post = jax.random.split(keys[i], 3)
      batch = mem_lib.sample(memory, k_batch, cfg.batch_size, cfg.sampling, hp["window"])
      ctx = Context(frozen=state.frozen, stats=stats, method_state=mstate, ema=ema,
                    anchor=state.anchor, hparams=hp)
      (loss, (new_stats, new_mstate)), grads = value_and_grad(trainable, ctx, batch, k_loss)
      if MASK in hp:  # untrained leaves: no gradient (nor in the clip's norm), no update
        grads = _masked(hp[MASK], grads)
      updates, new_opt = opt.update(grads, opt_state, trainable)
      if MASK in hp:
        updates = _masked(hp[MASK], updates)
      new_tr = optax.apply_updates(trainable, updates)
      new_ema = ema
      if cfg.ema:  # the momentum copy follows each optimizer step
        new_ema = jax.tree.map(lambda n, o: hp["ema_new"] * n + hp["ema_old"] * o, new_tr, ema)
      if learner.post_update_fn is not None:
        new_tr = learner.post_update_fn(new_tr, ctx.replace(ema=new_ema), k_post)
      ok = jnp.isfinite(loss) & _all_finite(grads)
      # A non-finite loss never reaches the carried state: skip and count.
      new = (new_tr, new_stats, new_mstate, new_ema, new_opt)
      old = (trainable, stats, mstate, ema, opt_state)
      return (*_select(ok, new, old), skipped + (~ok).astype(jnp.int32),
              loss_sum + jnp.where(ok, loss, 0.0).astype(jnp.float32))

    init = (trainable, state.stats, state.method_state, state.ema, opt_state, state.skipped,
            jnp.zeros((), jnp.float32))
    *out, loss_sum = jax.lax.fori_loop(0, hp["steps"], one_update, init)
    return (*out, loss_sum / jnp.maximum(hp["steps"], 1).astype(jnp.float32))

  def step(state: TTTState, tick: Tick):
    hp = state.hparams
    key, k_adapt = jax.random.split(state.key)
    memory = mem_lib.push(state.memory, tick.data, tick.push)
    active = tick.adapt & (memory.count > 0) & (hp["steps"] > 0)
    trainable = state.trainable
    resets = state.resets
    if learner.reset_fn is not None:
      # The reset rule judges the parameters this tick would adapt from.
      trainable = _select(active & ~hp["carry_params"], state.anchor, trainable)
      ctx = Context(frozen=state.frozen, stats=state.stats, method_state=state.method_state,
                    ema=state.ema, anchor=state.anchor, hparams=hp)
      r = tick.adapt & learner.reset_fn(trainable, ctx, tick.data)
      trainable = _select(r, state.anchor, trainable)
      resets = resets + r.astype(jnp.int32)
    carried = (trainable, state.stats, state.method_state, state.ema, state.opt_state, state.skipped)
    if learner.loss_fn is None:  # a predict-only method: no update branch to compile
      (trainable, stats, mstate, ema, opt_state, skipped), loss = carried, jnp.zeros((), jnp.float32)
    else:
      trainable, stats, mstate, ema, opt_state, skipped, loss = jax.lax.cond(
          active, lambda: update_loop(state, trainable, memory, k_adapt),
          lambda: (*carried, jnp.zeros((), jnp.float32)))
    ctx = Context(frozen=state.frozen, stats=stats, method_state=mstate, ema=ema,
                  anchor=state.anchor, hparams=hp)
    pred_carry = state.pred_carry
    if learner.predict_carry_init is None:
      predict = lambda: learner.predict_fn(trainable, ctx, tick.data)
      blank = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(predict))
      labels = jax.lax.cond(tick.predict, predict, lambda: blank)
    else:
      predict = lambda: learner.predict_fn(trainable, ctx, tick.data, pred_carry)
      blank = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(predict)[0])
      labels, pred_carry = jax.lax.cond(tick.predict, predict, lambda: (blank, pred_carry))
    new = state.replace(trainable=trainable, stats=stats, method_state=mstate, ema=ema,
                        opt_state=opt_state, memory=memory, step=state.step + 1, key=key,
                        skipped=skipped, resets=resets, pred_carry=pred_carry)
    return new, dict(labels=labels, loss=loss, adapted=active)

  return step
