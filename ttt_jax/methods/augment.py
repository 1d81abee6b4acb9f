"""Per-sample random crops and flips for the TTT batch (each sample its own)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def random_resized_crop(key, images_BHWC, *, min_scale: float = 1.0, flip: bool = False):
  """Crops a random box of each image (area share in [min_scale, 1], same aspect) and
  resizes it back to `H, W` (bilinear); optional horizontal flip. `min_scale=1` and
  `flip=False` return the images unchanged."""
  if min_scale >= 1.0 and not flip:
    return images_BHWC
  b, h, w, c = images_BHWC.shape

  def one(k, img):
    k1, k2, k3, k4 = jax.random.split(k, 4)
    s = jnp.sqrt(jax.random.uniform(k1, (), minval=min_scale, maxval=1.0))
    y0 = jax.random.uniform(k2, ()) * (1 - s) * h
    x0 = jax.random.uniform(k3, ()) * (1 - s) * w
    scale = jnp.stack([1.0 / s, 1.0 / s])
    out = jax.image.scale_and_translate(img, (h, w, c), (0, 1), scale, -jnp.stack([y0, x0]) * scale,
                                        "linear", antialias=False)
    if flip:
      out = jnp.where(jax.random.bernoulli(k4), out[:, ::-1], out)
    return out

  return jax.vmap(one)(jax.random.split(key, b), images_BHWC)
