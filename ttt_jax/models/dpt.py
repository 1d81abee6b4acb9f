"""DPT decoder (Ranftl et al.) over four ViT maps, as CAST's pixel decoder.

Reassemble: each map (`B, h, w, D` at the patch stride s) is projected by a 1 x 1
conv to its own width and resampled to strides s/4, s/2, s, 2s (4 x 4 and 2 x 2
transposed convs, identity, a stride-2 3 x 3 conv); a 3 x 3 conv (no bias) and a
1 x 1 conv bring each to `features` channels. Fusion runs coarse to fine: each
block adds a residual conv unit of the skip input, applies a second unit, upsamples
(bilinear, align_corners True) to the next finer map's size (x2 for the last) and
applies a 1 x 1 conv. Residual units are ReLU-conv-BN-ReLU-conv-BN (`use_bn`, as
the CAST snapshot's decoder).

Returns `(mask_features, multi_scale)`: the finest fused map (stride s/8) and the
three coarser fused maps, coarse to fine (strides s, s/2, s/4), which the
Mask2Former decoder attends to in turn.
"""
from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True, kw_only=True)
class DPTConfig:
  features: int = 256
  out_channels: tuple[int, int, int, int] = (96, 192, 384, 768)
  use_bn: bool = True


@functools.lru_cache(maxsize=64)
def linear_matrix_align_corners(n_in: int, n_out: int) -> np.ndarray:
  """`(n_out, n_in)` weights of a 1-D linear resize with align_corners True."""
  w = np.zeros((n_out, n_in), np.float32)
  for o in range(n_out):
    src = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    i0 = min(int(np.floor(src)), n_in - 1)
    i1 = min(i0 + 1, n_in - 1)
    t = src - i0
    w[o, i0] += 1 - t
    w[o, i1] += t
  return w


def resize_align_corners(x_BHWC, h: int, w: int):
  """Bilinear resize with align_corners True (torch's `interpolate` rule DPT uses)."""
  x = jnp.einsum("oh,bhwc->bowc", linear_matrix_align_corners(x_BHWC.shape[1], h), x_BHWC)
  return jnp.einsum("ow,bhwc->bhoc", linear_matrix_align_corners(x_BHWC.shape[2], w), x)


class ResidualUnit(nn.Module):
  features: int
  use_bn: bool

  @nn.compact
  def __call__(self, x, train: bool):
    h = x
    for i in range(2):
      h = nn.Conv(self.features, (3, 3), padding=1, use_bias=not self.use_bn, name=f"conv{i + 1}")(nn.relu(h))
      if self.use_bn:
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f"bn{i + 1}")(h)
    return x + h


class FusionBlock(nn.Module):
  features: int
  use_bn: bool

  @nn.compact
  def __call__(self, x, skip, size, train: bool):
    if skip is not None:
      x = x + ResidualUnit(self.features, self.use_bn, name="unit1")(skip, train)
    x = ResidualUnit(self.features, self.use_bn, name="unit2")(x, train)
    x = resize_align_corners(x, *size)
    return nn.Conv(self.features, (1, 1), name="out_conv")(x)


class DPT(nn.Module):
  cfg: DPTConfig

  @nn.compact
  def __call__(self, maps, train: bool = False):
    c = self.cfg
    if len(maps) != 4:
      raise ValueError(f"DPT reads 4 encoder maps, got {len(maps)}")
    levels = []
    for i, (x, ch) in enumerate(zip(maps, c.out_channels)):
      x = nn.Conv(ch, (1, 1), name=f"project_{i}")(x)
      if i == 0:
        x = nn.ConvTranspose(ch, (4, 4), strides=(4, 4), padding="VALID", name=f"resize_{i}")(x)
      elif i == 1:
        x = nn.ConvTranspose(ch, (2, 2), strides=(2, 2), padding="VALID", name=f"resize_{i}")(x)
      elif i == 3:
        x = nn.Conv(ch, (3, 3), strides=(2, 2), padding=1, name=f"resize_{i}")(x)
      x = nn.Conv(c.features, (3, 3), padding=1, use_bias=False, name=f"layer{i + 1}_rn")(x)
      levels.append(nn.Conv(c.features, (1, 1), name=f"adapt_{i}")(x))
    l1, l2, l3, l4 = levels
    fuse = lambda i: FusionBlock(c.features, c.use_bn, name=f"refinenet{i}")
    p4 = fuse(4)(l4, None, l3.shape[1:3], train)
    p3 = fuse(3)(p4, l3, l2.shape[1:3], train)
    p2 = fuse(2)(p3, l2, l1.shape[1:3], train)
    p1 = fuse(1)(p2, l1, (2 * l1.shape[1], 2 * l1.shape[2]), train)
    return p1, (p4, p3, p2)
