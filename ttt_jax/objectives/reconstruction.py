"""Masked-image reconstruction (the TTT-MAE self-supervised task).

Reference behaviour (video-ttt-release, METHODS.md): 16x16 patches, ratio 0.85,
masked pixels zeroed after mean/std normalisation (they sit at the mean colour),
the mask given as a 4th input channel, plain MSE to the normalised image over all
pixels. Options: loss on masked pixels only; per-patch normalised targets (the
image-level TTT-MAE predecessor).
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from ttt_jax.models.inputs import mask_input


def patch_mask(key: jax.Array, batch: int, height: int, width: int, *, patch: int = 16,
               ratio: float = 0.85) -> jax.Array:
  """Random patch masks, `B, H, W` float32 (1 = masked), exactly round(ratio * n) patches each.

  Border patches that do not fit are cut to the frame.
  """
  if not 0.0 <= ratio < 1.0:
    raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
  gh, gw = math.ceil(height / patch), math.ceil(width / patch)
  n = gh * gw
  n_mask = int(round(ratio * n))
  ranks = jnp.argsort(jnp.argsort(jax.random.uniform(key, (batch, n)), axis=1), axis=1)
  m = (ranks < n_mask).astype(jnp.float32).reshape(batch, gh, gw)
  m = jnp.repeat(jnp.repeat(m, patch, axis=1), patch, axis=2)
  return m[:, :height, :width]


def _patch_normalise(x_BHW3, patch):
  b, h, w, c = x_BHW3.shape
  ph, pw = h // patch, w // patch
  x = x_BHW3[:, :ph * patch, :pw * patch].reshape(b, ph, patch, pw, patch, c)
  mu = x.mean(axis=(2, 4, 5), keepdims=True)
  var = x.var(axis=(2, 4, 5), keepdims=True)
  x = (x - mu) / jnp.sqrt(var + 1e-6)
  out = x_BHW3.at[:, :ph * patch, :pw * patch].set(x.reshape(b, ph * patch, pw * patch, c))
  return out


def reconstruction_loss(reconstruct: Callable[[jax.Array], jax.Array], images_BHW3: jax.Array,
                        key: jax.Array, *, patch: int = 16, ratio: float = 0.85,
                        masked_only: bool = False, norm_pix: bool = False, has_aux: bool = False):
  """MSE between `reconstruct(masked input)` and the normalised images, with an
  independent random patch mask per sample drawn from `key` (`patch_mask`).

  Args:
    reconstruct: `B, H, W, 4 -> B, H, W, 3`, the reconstruction head g(f(.)); with
      `has_aux`, `-> (B, H, W, 3, aux)` (e.g. the head's updated BatchNorm statistics).
    images_BHW3: normalised images.
    key: draws the masks.
  Returns: scalar loss, or `(loss, aux)` with `has_aux`.
  """
  b, h, w, _ = images_BHW3.shape
  m = patch_mask(key, b, h, w, patch=patch, ratio=ratio)
  return masked_reconstruction_loss(reconstruct, images_BHW3, m, patch=patch,
                                    masked_only=masked_only, norm_pix=norm_pix, has_aux=has_aux)


def masked_reconstruction_loss(reconstruct: Callable[[jax.Array], jax.Array], images_BHW3: jax.Array,
                               mask_BHW: jax.Array, *, patch: int = 16, masked_only: bool = False,
                               norm_pix: bool = False, has_aux: bool = False):
  """`reconstruction_loss` for given masks `B, H, W` (1 = masked), e.g. to feed the
  same masks to another implementation."""
  out = reconstruct(mask_input(images_BHW3, mask_BHW))
  pred, aux = out if has_aux else (out, None)
  target = _patch_normalise(images_BHW3, patch) if norm_pix else images_BHW3
  err = jnp.mean(jnp.square(pred.astype(jnp.float32) - target), axis=-1)
  loss = (jnp.sum(err * mask_BHW) / jnp.maximum(jnp.sum(mask_BHW), 1.0) if masked_only
          else jnp.mean(err))
  return (loss, aux) if has_aux else loss
