"""The class-balance reset heuristic of the online TTT baselines.

Reset the adapted model to its initial weights when the number of classes it
predicts on the current frame drifts from what the initial model predicts there.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def num_predicted_classes(logits_hwC: jax.Array, min_pixels: int = 1) -> jax.Array:
  """How many classes win at least `min_pixels` pixels (int32 scalar)."""
  c = logits_hwC.shape[-1]
  counts = jnp.bincount(jnp.argmax(logits_hwC, -1).reshape(-1), length=c)
  return jnp.sum(counts >= min_pixels).astype(jnp.int32)


def class_drift(logits_now_hwC: jax.Array, logits_init_hwC: jax.Array, *,
                tolerance: int = 1, min_pixels: int = 1) -> jax.Array:
  """True when |#classes(now) - #classes(initial)| > tolerance."""
  d = num_predicted_classes(logits_now_hwC, min_pixels) - num_predicted_classes(
      logits_init_hwC, min_pixels)
  return jnp.abs(d) > tolerance
