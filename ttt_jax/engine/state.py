"""The train state carried from tick to tick, and how variables are split into it."""
from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import struct, traverse_util

from ttt_jax.engine.memory import TickMemory

PyTree = Any


@struct.dataclass
class TTTState:
  """Everything online TTT carries between ticks (a pytree).

  What changes, and by what, decides where a variable lives:

  Attributes:
    trainable: parameters the optimizer updates.
    stats: variables the loss's forward pass updates but the optimizer does not
      (normalisation statistics, e.g. `{'batch_stats': ...}`).
    frozen: variables nothing updates (frozen parameters).
    method_state: a method's own state, updated by its loss (e.g. DiTTA's prototypes).
    ema: momentum copy of `trainable`, updated after each optimizer step
      (`StepConfig.ema`; DiTTA's and CoTTA's momentum model), or None.
    anchor: the initial `trainable`: restored by memory-less modes and resets,
      and the source weights a method may read (CoTTA's).
    hparams: runtime settings (a dict of scalars; see `step.HPARAMS`). Runs that
      differ only here share one compiled program.
    opt_state: optax state of `trainable` only.
    memory: explicit memory, a ring buffer of the last ticks' data.
    step: ticks processed (int32).
    key: PRNG key, split once per tick.
    skipped: updates skipped because the loss or a gradient was not finite.
    resets: resets triggered by a method's reset rule.
    pred_carry: a recurrent predictor's carry (e.g. the previous frame's features
      and logits), or None.
  """
  trainable: PyTree
  stats: PyTree
  frozen: PyTree
  method_state: PyTree
  ema: PyTree | None
  anchor: PyTree
  hparams: PyTree
  opt_state: PyTree
  memory: TickMemory
  step: jax.Array
  key: jax.Array
  skipped: jax.Array
  resets: jax.Array
  pred_carry: PyTree = None


@struct.dataclass
class Context:
  """What a learner's functions see of the state besides the trainable parameters."""
  frozen: PyTree
  stats: PyTree
  method_state: PyTree
  ema: PyTree | None
  anchor: PyTree
  hparams: PyTree

  def variables(self, trainable: PyTree) -> PyTree:
    """The model's full variables with `trainable` in place (a nested dict)."""
    return merge_params(merge_params(trainable, self.stats), self.frozen)


def path_str(path: tuple[str, ...]) -> str:
  return "/".join(str(p) for p in path)


def path_keys(path) -> tuple[str, ...]:
  """A jax pytree path (dict keys) as the string tuple `path_matcher` reads."""
  return tuple(str(getattr(k, "key", k)) for k in path)


def path_matcher(patterns: Sequence[str] | str):
  """`path -> bool`: whether `'/'.join(path)` fully matches any regex in `patterns`
  (big_vision's `make_mask_trees` convention, e.g. `'params/encoder/.*'`)."""
  if isinstance(patterns, str):
    patterns = (patterns,)
  compiled = []
  for p in patterns:
    try:
      compiled.append(re.compile(p))
    except re.error as e:
      raise ValueError(f"trainable pattern {p!r} is not a valid regular expression: {e}") from None
  return lambda path: any(c.fullmatch(path_str(path)) for c in compiled)


def split_params(variables: PyTree, is_trainable):
  """Splits a nested dict of variables into (trainable, rest) by path.

  `is_trainable` is a `path -> bool` or a sequence of path regexes. Paths are
  tuples of keys, e.g. `('params', 'decode_head', 'classifier', 'kernel')`. Both
  halves keep the nesting; a leaf is in exactly one.
  """
  if not callable(is_trainable):
    is_trainable = path_matcher(is_trainable)
  flat = traverse_util.flatten_dict(variables)
  tr = {k: v for k, v in flat.items() if is_trainable(k)}
  fr = {k: v for k, v in flat.items() if not is_trainable(k)}
  return traverse_util.unflatten_dict(tr), traverse_util.unflatten_dict(fr)


def split_variables(variables: PyTree, trainable_patterns) -> tuple[PyTree, PyTree, PyTree]:
  """`(trainable, stats, frozen)`: parameters matching `trainable_patterns`; every
  collection other than 'params' (normalisation statistics); the other parameters.
  Only 'params' leaves are ever trained."""
  match = path_matcher(trainable_patterns) if not callable(trainable_patterns) else trainable_patterns
  trainable, rest = split_params(variables, lambda p: p[0] == "params" and match(p))
  stats, frozen = split_params(rest, lambda p: p[0] != "params")
  return trainable, stats, frozen


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
