"""Convolutions that stay fast inside `lax.scan` on XLA:CPU.

Why: XLA:CPU leaves the weight-gradient convolutions inside a `lax.scan` /
while-loop body in non-canonical layouts (e.g. `f01b_i01o->01bf`) and runs them
about 10x slower than the same step outside a loop (DESIGN.md, "Facts"). The scan
driver carries the whole video in one while loop, so every convolution the models
use goes through `conv2d` below: the forward pass and the input gradient are plain
`lax.conv_general_dilated`; the weight gradient is computed from
`lax.conv_general_dilated_patches` and one einsum, which XLA lowers to a dot that
is fast inside and outside loops. Two special cases avoid XLA:CPU's
convolution emitter altogether (it is also slow for grouped convolutions):

- depthwise k x k (SegFormer's Mix-FFN): k*k shifted multiply-adds, with a
  hand-written VJP of the same form (`depthwise_conv2d`), about 6x faster than
  the native grouped convolution forward and backward;
- kernel == stride, no padding (the attention's spatial reduction): space-to-depth
  and one matmul (`patchify_conv2d`), exact.

Gradients equal the native ones to float round-off (tests/models/test_conv.py);
`benchmarks/drivers.py --native-conv` shows the speed without these.
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


def _shift_sum(x_NHWC, w_HW1C, padding):
  kh, kw = w_HW1C.shape[:2]
  (pt, pb), (pl, pr) = padding
  xp = jnp.pad(x_NHWC, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
  y = jnp.zeros((x_NHWC.shape[0], ho, wo, x_NHWC.shape[3]), jnp.result_type(x_NHWC, w_HW1C))
  for u in range(kh):
    for v in range(kw):
      y = y + xp[:, u:u + ho, v:v + wo, :] * w_HW1C[u, v, 0][None, None, None, :]
  return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv2d(x_NHWC, w_HW1C, padding):
  """Stride-1 depthwise convolution (one filter per channel) as shifted multiply-adds."""
  return _shift_sum(x_NHWC, w_HW1C, padding)


def _dw_fwd(x, w, padding):
  return _shift_sum(x, w, padding), (x, w)


def _dw_bwd(padding, res, dy):
  x, w = res
  kh, kw = w.shape[:2]
  (pt, pb), (pl, pr) = padding
  # dx correlates dy with the flipped kernel; dw sums each shifted input times dy.
  dx = _shift_sum(dy, w[::-1, ::-1], ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr)))
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  ho, wo = dy.shape[1:3]
  dw = jnp.stack([jnp.stack([jnp.sum(xp[:, u:u + ho, v:v + wo, :] * dy, axis=(0, 1, 2))
                             for v in range(kw)]) for u in range(kh)])
  return dx, dw[:, :, None, :].astype(w.dtype)


depthwise_conv2d.defvjp(_dw_fwd, _dw_bwd)


def patchify_conv2d(x_NHWC, w_HWIO):
  """Convolution with kernel == stride and no padding: space-to-depth + matmul.

  Trailing rows/columns that do not fill a patch are dropped, as VALID does.
  """
  kh, kw, i, o = w_HWIO.shape
  n, h, w, c = x_NHWC.shape
  ho, wo = h // kh, w // kw
  p = x_NHWC[:, :ho * kh, :wo * kw].reshape(n, ho, kh, wo, kw, c).transpose(0, 1, 3, 2, 4, 5)
  return jnp.einsum("nhwuvc,uvco->nhwo", p, w_HWIO)


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
    kernel = kernel.astype(x_NHWC.dtype)
    strides = tuple(self.strides)
    if self.groups == c == self.features and strides == (1, 1):
      y = depthwise_conv2d(x_NHWC, kernel, pad)
    elif self.groups == 1 and strides == tuple(self.kernel_size) and pad == ((0, 0), (0, 0)):
      y = patchify_conv2d(x_NHWC, kernel)
    else:
      y = conv2d(x_NHWC, kernel, strides, pad, self.groups)
    if self.use_bias:
      b = self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
      y = y + b.reshape((1,) * (y.ndim - 1) + (-1,))
    return y
