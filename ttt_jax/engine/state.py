"""The train state carried from frame to frame, and parameter subsets."""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct, traverse_util

from ttt_jax.engine.memory import FrameMemory

PyTree = Any


@struct.dataclass
class TTTState:
  """Everything online TTT carries between frames (a pytree).

  Attributes:
    trainable: the parameter subset the optimizer updates.
    frozen: every other variable (frozen parameters, BatchNorm statistics).
    anchor: the initial `trainable`, restored by memory-less modes and resets.
    opt_state: optax state of `trainable` only (none for frozen leaves).
    memory: explicit memory, a ring buffer of the last k frames.
    ema: exponential moving average of `trainable` (momentum model) or None.
    step: ticks processed (int32).
    key: PRNG key, split once per tick.
    skipped: updates skipped because the loss or a gradient was not finite.
    resets: resets triggered by a method's reset rule.
    pred_carry: a recurrent predictor's carry (e.g. the previous frame's features
      and logits), or None.
  """
  trainable: PyTree
  frozen: PyTree
  anchor: PyTree
  opt_state: PyTree
  memory: FrameMemory
  ema: PyTree | None
  step: jax.Array
  key: jax.Array
  skipped: jax.Array
  resets: jax.Array
  pred_carry: PyTree = None


def split_params(variables: PyTree, is_trainable: Callable[[tuple[str, ...]], bool]):
  """Splits a nested dict of variables into (trainable, frozen) by path.

  Paths are tuples of keys, e.g. `('params', 'decode_head', 'classifier', 'kernel')`.
  Both halves keep the nesting; a leaf is in exactly one.
  """
  flat = traverse_util.flatten_dict(variables)
  tr = {k: v for k, v in flat.items() if is_trainable(k)}
  fr = {k: v for k, v in flat.items() if not is_trainable(k)}
  return traverse_util.unflatten_dict(tr), traverse_util.unflatten_dict(fr)


def merge_params(trainable: PyTree, frozen: PyTree) -> PyTree:
  """Inverse of `split_params`."""
  flat = traverse_util.flatten_dict(frozen)
  flat.update(traverse_util.flatten_dict(trainable))
  return traverse_util.unflatten_dict(flat)


def check_state_matches(state: TTTState, reference: TTTState, what: str = "state") -> None:
  """Raises ValueError if `state` does not have the structure/shapes of `reference`."""
  s_leaves, s_def = jax.tree.flatten(state)
  r_leaves, r_def = jax.tree.flatten(reference)
  if s_def != r_def:
    raise ValueError(f"{what} does not match the model: tree structure differs.\n"
                     f"got:      {s_def}\nexpected: {r_def}")
  for i, (a, b) in enumerate(zip(s_leaves, r_leaves)):
    if jnp.shape(a) != jnp.shape(b) or jnp.result_type(a) != jnp.result_type(b):
      path = jax.tree_util.keystr(jax.tree_util.tree_flatten_with_path(reference)[0][i][0])
      raise ValueError(f"{what} does not match the model at {path}: got {jnp.shape(a)} "
                       f"{jnp.result_type(a)}, expected {jnp.shape(b)} {jnp.result_type(b)}")
