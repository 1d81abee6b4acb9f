"""The Y-SegFormer's input convention: ImageNet-normalised RGB plus a mask channel.

The model takes `N, H, W, 4`: three normalised colour channels and a fourth that
is 1 where a pixel is masked (its colour zeroed, i.e. at the mean colour) and 0
where visible. Prediction sees every pixel (mask channel all 0); the masked
reconstruction task (TTT-MAE) zeroes masked patches and sets the channel.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

# ImageNet statistics, as SegFormer's image processor uses (0..255 units).
MEAN_RGB = jnp.array([0.485, 0.456, 0.406]) * 255.0
STD_RGB = jnp.array([0.229, 0.224, 0.225]) * 255.0


def normalise(frames_uint8) -> jax.Array:
  """uint8 (or float 0..255) RGB `..., 3` -> mean/std-normalised float32."""
  x = jnp.asarray(frames_uint8, jnp.float32)
  per_channel = lambda v: v.reshape((1,) * (x.ndim - 1) + (3,))   # explicit broadcasting
  return (x - per_channel(MEAN_RGB)) / per_channel(STD_RGB)


def mask_input(images_BHW3: jax.Array, mask_BHW: jax.Array) -> jax.Array:
  """Zeroes masked pixels of normalised images and appends the mask channel: `B, H, W, 4`."""
  keep = (1.0 - mask_BHW)[..., None]
  return jnp.concatenate([images_BHW3 * keep, mask_BHW[..., None]], axis=-1)


def visible_input(images_BHW3: jax.Array) -> jax.Array:
  """Unmasked input for prediction: mask channel all 'visible' (0)."""
  return jnp.concatenate([images_BHW3, jnp.zeros_like(images_BHW3[..., :1])], axis=-1)
