"""Mask2Former's training augmentation for instance batches, in the step (explicit keys).

The reference's instance mapper (Mask2Former's `MaskFormerInstanceDatasetMapper`, which
CAST's snapshot trains with on Cityscapes) resizes each image so its short side is a
random choice of 0.5, 0.6, ..., 2.0 times the test size, crops a fixed window, applies
the SSD colour jitter and flips horizontally, then drops instances the crop emptied.
Without the scale jitter a Mask2Former trained on a few dozen images memorises them
(benchmarks/cast_curve.py).

The reference's window (512 x 1024 on Cityscapes) is half its test frame, so it never
pads. Here the window is the whole test size `H x W` instead: at the embedded 112 px a
half-size window would leave the ViT a 4 x 4 grid of patches. Objects still appear at
0.5 to 2 times their test size: s > 1 is a random `H x W` window of the image enlarged
s times, and s < 1 shrinks the whole image into a random place of the canvas, the rest
the mean colour (zero once normalised, as detectron2 pads). Colour: the
SSD/PhotoMetricDistortion jitter of `augment.photometric_distortion` (hue left out).

Images `B, H, W, 3` RGB in 0..255; target masks `B, G, h, w` bool at any resolution
(ground truth at `H, W`, pseudo-labels at the mask logits'); labels `B, G` (-1 padding).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ttt_jax.methods.augment import photometric_distortion
from ttt_jax.methods.cast_views import random_flip
from ttt_jax.models.inputs import MEAN_RGB


@dataclasses.dataclass(frozen=True)
class InstanceAugment:
  """Settings (the reference's: scales 0.5 to 2.0 in 16 steps, colour on, flip on).
  `min_scale = max_scale = 1` turns the scale jitter off."""
  min_scale: float = 0.5
  max_scale: float = 2.0
  num_scales: int = 16
  colour: bool = True
  flip: bool = True


def draw_scale_shift(key, batch: int, hw: tuple[int, int], aug: InstanceAugment):
  """Per sample, the scale `s_B` (one of `num_scales` evenly spaced values) and the
  shift `t_B2` (y, x, in pixels of the `hw` canvas) of the enlarged or shrunken image:
  uniform over the windows inside the image (s > 1) or the places inside the canvas (s < 1)."""
  ks, kt = jax.random.split(key)
  n = max(aug.num_scales, 1)
  step = (aug.max_scale - aug.min_scale) / max(n - 1, 1)
  s_B = aug.min_scale + step * jax.random.randint(ks, (batch,), 0, n).astype(jnp.float32)
  hw_12 = jnp.array([hw], jnp.float32)
  room_B2 = hw_12 - s_B[:, None] * hw_12          # < 0: a crop; > 0: padding
  t_B2 = jax.random.uniform(kt, (batch, 2)) * room_B2
  return s_B, t_B2


def scale_shift(images_BHW3, masks, s_B, t_B2):
  """Every image scaled by `s_B` about its top-left corner and shifted by `t_B2` (pixels),
  bilinear (antialiased when shrinking); outside the image: the mean colour. Each mask
  array in `masks` (`B, G, h, w`) gets the same geometric change at its own resolution
  (bilinear, kept where >= 0.5). Returns `(images_BHW3 float32, [masks...])`."""
  _, h, w, _ = images_BHW3.shape

  def image(img, s, t):
    x = jnp.asarray(img, jnp.float32) - MEAN_RGB.reshape(1, 1, 3)
    x = jax.image.scale_and_translate(x, x.shape, (0, 1), jnp.stack([s, s]), t, "linear", antialias=True)
    return x + MEAN_RGB.reshape(1, 1, 3)

  def mask(m_Ghw, s, t):
    r = jnp.array([m_Ghw.shape[1] / h, m_Ghw.shape[2] / w], jnp.float32)
    y = jax.image.scale_and_translate(m_Ghw.astype(jnp.float32), m_Ghw.shape, (1, 2), jnp.stack([s, s]), t * r,
                                      "linear", antialias=True)
    return y >= 0.5

  imgs = jax.vmap(image)(images_BHW3, s_B, t_B2)
  return imgs, [jax.vmap(mask)(m, s_B, t_B2) for m in masks]


def augment_instances(key, images_BHW3, labels_BG, masks_BGhw, aug: InstanceAugment):
  """The reference's training augmentation of one batch: scale jitter and crop or pad,
  colour jitter, horizontal flip. Instances left with no pixel become padding (-1).
  Returns `(images_BHW3 float32 0..255, labels_BG, masks_BGhw bool)`."""
  k_geo, k_col, k_flip = jax.random.split(key, 3)
  b, h, w, _ = images_BHW3.shape
  imgs = jnp.asarray(images_BHW3, jnp.float32)
  masks = jnp.asarray(masks_BGhw, bool)
  if aug.min_scale != 1.0 or aug.max_scale != 1.0:
    s_B, t_B2 = draw_scale_shift(k_geo, b, (h, w), aug)
    imgs, (masks,) = scale_shift(imgs, [masks], s_B, t_B2)
    labels_BG = jnp.where(masks.any((2, 3)), labels_BG, -1)
  if aug.colour:
    imgs = photometric_distortion(k_col, imgs)
  if aug.flip:
    imgs, masks = random_flip(k_flip, (imgs, 2), (masks, 3))
  return imgs, labels_BG, masks
