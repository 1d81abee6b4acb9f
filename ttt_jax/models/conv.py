"""2-D convolution whose weight gradient is a patches x gradient einsum.

Why: XLA:CPU leaves the weight-gradient convolutions inside a `lax.scan` /
while-loop body in non-canonical layouts (e.g. `f01b_i01o->01bf`) and runs them
about 10x slower than the same step outside a loop (DESIGN.md, "Facts"). The scan
driver carries the whole video in one while loop, so every convolution the models
use goes through `conv2d` below: the forward pass and the input gradient are plain
`lax.conv_general_dilated`; the weight gradient is computed from
`lax.conv_general_dilated_patches` and one einsum, which XLA lowers to a dot that
is fast inside and outside loops. Gradients equal the native ones to float
round-off (tests/models/test_conv.py); `benchmarks/drivers.py` shows the speed.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")


def _native(x, w, stride, padding, groups):
  return lax.conv_general_dilated(
      x, w, window_strides=stride, padding=padding, dimension_numbers=_DN,
      feature_group_count=groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d(x_NHWC, w_HWIO, stride: tuple[int, int], padding, groups: int = 1):
  """Grouped 2-D convolution, NHWC x HWIO -> NHWC (no bias).

  Args:
    x_NHWC: input, C = groups * I.
    w_HWIO: kernel, O divisible by groups.
    stride: (sh, sw).
    padding: 'SAME', 'VALID' or ((top, bottom), (left, right)).
    groups: feature groups (C for depthwise).
  """
  return _native(x_NHWC, w_HWIO, stride, padding, groups)


def _fwd(x, w, stride, padding, groups):
  return _native(x, w, stride, padding, groups), (x, w)


def _bwd(stride, padding, groups, res, dy_NHWO):
  x, w = res
  kh, kw, i_per_group, o = w.shape
  _, vjp_x = jax.vjp(lambda x_: _native(x_, w, stride, padding, groups), x)
  (dx,) = vjp_x(dy_NHWO)
  # Patches come channel-major: feature index = c * (kh * kw) + u * kw + v.
  p = lax.conv_general_dilated_patches(
      x, (kh, kw), stride, padding, dimension_numbers=_DN)
  n, ho, wo, _ = p.shape
  p = p.reshape(n, ho, wo, groups, i_per_group, kh, kw)
  dy = dy_NHWO.reshape(n, ho, wo, groups, o // groups)
  dw = jnp.einsum("nhwgcuv,nhwgo->uvcgo", p, dy.astype(p.dtype))
  return dx, dw.reshape(kh, kw, i_per_group, o).astype(w.dtype)


conv2d.defvjp(_fwd, _bwd)


class Conv(nn.Module):
  """`nn.Conv` look-alike (kernel HWIO, bias) on top of `conv2d`."""
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: int | str = 0
  groups: int = 1
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x_NHWC):
    c = x_NHWC.shape[-1]
    if c % self.groups or self.features % self.groups:
      raise ValueError(f"Conv {self.name}: channels {c} -> {self.features} not divisible by groups {self.groups}")
    kernel = self.param("kernel", self.kernel_init,
                        (*self.kernel_size, c // self.groups, self.features))
    pad = self.padding
    if isinstance(pad, int):
      pad = ((pad, pad), (pad, pad))
    y = conv2d(x_NHWC, kernel.astype(x_NHWC.dtype), tuple(self.strides), pad, self.groups)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
    return y
