"""Mixed precision at a model's boundary: compute in bfloat16, keep float32 state.

The parameters, statistics and optimizer state stay float32 in the train state; a
bfloat16 forward casts them (and the inputs) on the way in, and the outputs (and
updated statistics) back to float32 on the way out. Gradients flow through the
casts, so they arrive in float32 at the float32 parameters. Integer and boolean
leaves (labels, masks, keys) are left alone.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = ("float32", "bfloat16")


def cast_floats(tree: Any, dtype) -> Any:
  """Every floating-point array leaf of `tree` as `dtype`; other leaves unchanged."""
  def cast(x):
    if isinstance(x, (jax.Array, jnp.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating):
      return x.astype(dtype)
    return x
  return jax.tree.map(cast, tree)


def apply_in(compute_dtype: str, apply_fn: Callable, variables, *args, **kwargs):
  """`apply_fn(variables, *args, **kwargs)` computed in `compute_dtype`, its float
  outputs returned as float32 (keyword arguments, e.g. rngs, are passed as they are)."""
  if compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f"compute dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")
  if compute_dtype == "float32":
    return apply_fn(variables, *args, **kwargs)
  dt = jnp.dtype(compute_dtype)
  out = apply_fn(cast_floats(variables, dt), *cast_floats(args, dt), **kwargs)
  return cast_floats(out, jnp.float32)
