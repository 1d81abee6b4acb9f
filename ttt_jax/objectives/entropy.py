"""Tent: minimise the entropy of the model's own predictions (norm-layer affine only)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def entropy_loss(logits_BhwC: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """Mean per-pixel (or per-point) Shannon entropy (nats) of softmax(logits);
  `weights` (the logits' shape without classes, e.g. a validity mask) weight the mean."""
  logp = jax.nn.log_softmax(logits_BhwC.astype(jnp.float32), axis=-1)
  ent = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
  if weights is None:
    return jnp.mean(ent)
  w = weights.astype(jnp.float32)
  return jnp.sum(ent * w) / jnp.maximum(jnp.sum(w), 1.0)
