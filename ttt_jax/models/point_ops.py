"""Layers of a Point-Transformer-V3-style backbone on padded point clouds (static shapes).

- `neighbours` + `SubMConv3d`: a submanifold sparse 3D convolution (outputs at the
  occupied cells only, inputs from occupied cells only), PTv3's conditional
  positional encoding. No sparse-convolution library exists for JAX: neighbours are
  found by binary search of each offset cell's Morton code among the scene's sorted
  codes, then one gather and one einsum per kernel offset.
- `PatchAttention`: multi-head attention within patches of `patch` consecutive points
  of a serialised order (the permutation from `serialization.serialize`); padding
  rows are masked out as keys.

Points are rows of `N` (a validity mask marks the real ones); one point per grid
cell is assumed where the convolution is used (grid-sampled clouds, as Pointcept's).
"""
from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ttt_jax.models.serialization import PAD_CODE, z_order

OFFSETS_3 = np.array(list(itertools.product((-1, 0, 1), repeat=3)), np.int32)   # 27 x 3


def neighbours(g_N3: jax.Array, valid_N: jax.Array, depth: int, offsets=OFFSETS_3) -> jax.Array:
  """`N, K` int32: the row of the point in cell `g + offsets[k]`, or -1 (none, or
  outside the grid). Padding rows have no neighbours."""
  n, k = g_N3.shape[0], len(offsets)
  key = jnp.where(valid_N, z_order(g_N3, depth), PAD_CODE)
  perm = jnp.argsort(key)
  sorted_key = key[perm]
  side = 1 << depth
  # All offsets at once (one search of N x K codes): an unrolled loop over the 125
  # offsets of a kernel 5 compiled ~10x slower.
  q = g_N3[:, None, :] + jnp.asarray(offsets, jnp.int32)[None]               # N, K, 3
  inside = jnp.all((q >= 0) & (q < side), axis=2) & valid_N[:, None]
  qk = z_order(jnp.clip(q, 0, side - 1).reshape(n * k, 3), depth).reshape(n, k)
  pos = jnp.clip(jnp.searchsorted(sorted_key, qk), 0, n - 1)
  return jnp.where(inside & (sorted_key[pos] == qk), perm[pos], -1).astype(jnp.int32)


class SubMConv3d(nn.Module):
  """Submanifold sparse convolution over `neighbours` (kernel `K, C_in, C_out`)."""
  features: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, x_NC: jax.Array, nbr_NK: jax.Array) -> jax.Array:
    k = nbr_NK.shape[1]
    w = self.param("kernel", nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2),
                   (k, x_NC.shape[-1], self.features))
    has = (nbr_NK >= 0)[..., None]
    gathered = jnp.where(has, x_NC[jnp.maximum(nbr_NK, 0)], 0)              # N, K, C_in
    y = jnp.einsum("nkc,kcd->nd", gathered, w.astype(x_NC.dtype))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,))[None, :]
    return y


class PatchAttention(nn.Module):
  """Attention within patches of a serialised order.

  Call with `x_NC` (rows in any order), `valid_N`, and the serialisation's `perm_N`
  and `inverse_N`; `N` must be a multiple of `patch` (pad scenes to it).
  """
  channels: int
  heads: int
  patch: int

  @nn.compact
  def __call__(self, x_NC, valid_N, perm_N, inverse_N):
    n, c = x_NC.shape
    if n % self.patch:
      raise ValueError(f"{n} points is not a multiple of the attention patch {self.patch}; pad the scene")
    if self.channels % self.heads:
      raise ValueError(f"channels {self.channels} not divisible by heads {self.heads}")
    d = self.channels // self.heads
    xs = x_NC[perm_N].reshape(n // self.patch, self.patch, c)
    ms = valid_N[perm_N].reshape(n // self.patch, self.patch)
    qkv = nn.Dense(3 * self.channels, name="qkv")(xs).reshape(n // self.patch, self.patch, 3, self.heads, d)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = jnp.einsum("pqhd,pkhd->phqk", q, k) / jnp.sqrt(d).astype(q.dtype)
    logits = jnp.where(ms[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
    att = jax.nn.softmax(logits, axis=-1)
    y = jnp.einsum("phqk,pkhd->pqhd", att, v).reshape(n // self.patch, self.patch, self.channels)
    y = nn.Dense(self.channels, name="proj")(y).reshape(n, self.channels)
    return y[inverse_N]
