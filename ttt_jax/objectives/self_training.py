"""Self-training: confident predictions on the clean image supervise a masked view."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from ttt_jax.models.inputs import mask_input, visible_input
from ttt_jax.objectives.reconstruction import patch_mask


def self_training_loss(segment: Callable[[jax.Array], jax.Array], images_BHW3: jax.Array,
                       key: jax.Array, *, threshold: float = 0.9, mask_ratio: float = 0.8,
                       patch: int = 16) -> jax.Array:
  """Cross-entropy of the masked view's logits to confident clean-view labels.

  Args:
    segment: `B, H, W, 4 -> B, h, w, C` logits.
    images_BHW3: normalised images.
    threshold: softmax confidence above which a pixel's pseudo-label is used.
    mask_ratio: share of 16x16 patches hidden in the student view (0.8).
  """
  b, h, w, _ = images_BHW3.shape
  teacher = jax.lax.stop_gradient(segment(visible_input(images_BHW3)))
  prob = jax.nn.softmax(teacher.astype(jnp.float32), axis=-1)
  conf, pseudo = prob.max(-1), prob.argmax(-1)
  m = patch_mask(key, b, h, w, patch=patch, ratio=mask_ratio)
  student = segment(mask_input(images_BHW3, m)).astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(student, pseudo)
  keep = (conf > threshold).astype(jnp.float32)
  return jnp.sum(ce * keep) / jnp.maximum(jnp.sum(keep), 1.0)
