"""CAST's pixel-aligned weak and strong views (per image, from explicit keys).

Weak: the training image as augmented (`instance_augment`: scale jitter, colour
jitter, and `random_flip` below, its targets moving with it). Strong: the weak view
through ColorJitter(brightness 0.4, contrast 0.4, saturation 0.4, hue 0.1) with
torchvision's definitions (brightness scales, contrast blends with the mean grey
level, saturation with the grey image, hue rotates in HSV), applied in that fixed
order (torchvision draws an order), then RandomGrayscale(p 0.2), then a 5 x 5
Gaussian blur with sigma in [0.1, 2] (reflect padding). No geometric change, so a
pixel is the same point in both views.

Images are RGB in 0..255 (float), `B, H, W, 3`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

GREY = jnp.array([0.299, 0.587, 0.114])


def rgb_to_hsv(x):
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  v = jnp.max(x, -1)
  c = v - jnp.min(x, -1)
  s = jnp.where(v > 0, c / jnp.where(v > 0, v, 1.0), 0.0)
  cs = jnp.where(c > 0, c, 1.0)
  h = jnp.where(v == r, (g - b) / cs, jnp.where(v == g, 2.0 + (b - r) / cs, 4.0 + (r - g) / cs))
  h = jnp.where(c > 0, (h / 6.0) % 1.0, 0.0)
  return jnp.stack([h, s, v], -1)


def hsv_to_rgb(x):
  h, s, v = x[..., 0], x[..., 1], x[..., 2]
  i = jnp.floor(h * 6.0)
  f = h * 6.0 - i
  p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
  i = i.astype(jnp.int32) % 6
  choose = lambda *opts: jnp.select([i == k for k in range(6)], opts)
  return jnp.stack([choose(v, q, p, p, t, v), choose(t, v, v, q, p, p), choose(p, p, t, v, v, q)], -1)


def _blur(img_HW3, sigma):
  k = jnp.arange(5, dtype=jnp.float32) - 2
  w = jnp.exp(-0.5 * (k / sigma) ** 2)
  w = w / w.sum()
  x = jnp.pad(img_HW3, ((2, 2), (2, 2), (0, 0)), mode="reflect")
  h, wd = img_HW3.shape[:2]
  x = sum(w[i] * x[i:i + h] for i in range(5))
  return sum(w[i] * x[:, i:i + wd] for i in range(5))


def strong_view(key, images_BHW3):
  """The strong view of each image (its own draws)."""

  def one(k, img):
    kb, kc, ks, kh, kg, kbl = jax.random.split(k, 6)
    x = img / 255.0
    x = jnp.clip(x * jax.random.uniform(kb, (), minval=0.6, maxval=1.4), 0, 1)
    c = jax.random.uniform(kc, (), minval=0.6, maxval=1.4)
    x = jnp.clip(c * x + (1 - c) * jnp.mean(x @ GREY), 0, 1)
    s = jax.random.uniform(ks, (), minval=0.6, maxval=1.4)
    x = jnp.clip(s * x + (1 - s) * (x @ GREY)[..., None], 0, 1)
    hsv = rgb_to_hsv(x)
    hsv = hsv.at[..., 0].set((hsv[..., 0] + jax.random.uniform(kh, (), minval=-0.1, maxval=0.1)) % 1.0)
    x = hsv_to_rgb(hsv)
    x = jnp.where(jax.random.bernoulli(kg, 0.2), jnp.broadcast_to((x @ GREY)[..., None], x.shape), x)
    x = _blur(x, jax.random.uniform(kbl, (), minval=0.1, maxval=2.0))
    return x * 255.0

  return jax.vmap(one)(jax.random.split(key, images_BHW3.shape[0]), images_BHW3)


def random_flip(key, *arrays_and_axes):
  """Flips each sample horizontally with probability 1/2, the same draw for every
  `(array, width_axis)` pair given (images `B, H, W, 3` with axis 2, target masks
  `B, G, H, W` with axis 3), so views and targets stay aligned."""
  b = arrays_and_axes[0][0].shape[0]
  flip = jax.random.bernoulli(key, 0.5, (b,))
  out = []
  for a, axis in arrays_and_axes:
    f = flip.reshape((b,) + (1,) * (a.ndim - 1))
    out.append(jnp.where(f, jnp.flip(a, axis), a))
  return tuple(out)
