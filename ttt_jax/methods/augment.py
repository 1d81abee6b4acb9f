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


def random_crop(key, images_BHWC, crop_hw: tuple[int, int]):
  """A random `crop_hw` window of each image at native scale (no resize, no flip), each
  sample its own position: the reference's TTT crop (detectron2's RandomCrop after a
  resize to the test size). `crop_hw` of `(0, 0)` or the image size returns the images."""
  b, h, w, c = images_BHWC.shape
  ch, cw = crop_hw
  if (ch, cw) in ((0, 0), (h, w)):
    return images_BHWC
  if not (0 < ch <= h and 0 < cw <= w):
    raise ValueError(f"crop size {crop_hw} does not fit in {h} x {w} frames")
  ky, kx = jax.random.split(key)
  y0 = jax.random.randint(ky, (b,), 0, h - ch + 1)
  x0 = jax.random.randint(kx, (b,), 0, w - cw + 1)
  return jax.vmap(lambda img, y, x: jax.lax.dynamic_slice(img, (y, x, 0), (ch, cw, c)))(
      images_BHWC, y0, x0)


def photometric_distortion(key, images_BHW3, *, brightness: float = 32.0,
                           contrast: tuple[float, float] = (0.5, 1.5),
                           saturation: tuple[float, float] = (0.5, 1.5)):
  """SegFormer's training-time colour jitter (mmseg `PhotoMetricDistortion`, hue left
  out), per sample, each part applied with probability 1/2.

  Args:
    images_BHW3: RGB in 0..255 (float or uint8).
    brightness: the largest added offset, in 0..255 units.
    contrast, saturation: ranges of the factor (saturation blends with the grey image).
  Returns: float32 `B, H, W, 3` in 0..255.
  """
  x = jnp.asarray(images_BHW3, jnp.float32)
  b = x.shape[0]
  kb, kc, ks, kon = jax.random.split(key, 4)
  on = jax.random.bernoulli(kon, 0.5, (3, b, 1, 1, 1))
  delta = jax.random.uniform(kb, (b, 1, 1, 1), minval=-brightness, maxval=brightness)
  x = jnp.clip(jnp.where(on[0], x + delta, x), 0, 255)
  alpha = jax.random.uniform(kc, (b, 1, 1, 1), minval=contrast[0], maxval=contrast[1])
  x = jnp.clip(jnp.where(on[1], x * alpha, x), 0, 255)
  grey = (x @ jnp.array([0.299, 0.587, 0.114]))[..., None]
  sat = jax.random.uniform(ks, (b, 1, 1, 1), minval=saturation[0], maxval=saturation[1])
  return jnp.clip(jnp.where(on[2], grey + sat * (x - grey), x), 0, 255)
