"""Tent: minimise the entropy of the model's own predictions (norm-layer affine only)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def entropy_loss(logits_BhwC: jax.Array) -> jax.Array:
  """Mean per-pixel Shannon entropy (nats) of softmax(logits)."""
  logp = jax.nn.log_softmax(logits_BhwC.astype(jnp.float32), axis=-1)
  return -jnp.mean(jnp.sum(jnp.exp(logp) * logp, axis=-1))
