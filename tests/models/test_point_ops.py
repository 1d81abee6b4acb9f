"""Sparse convolution against a dense 3D convolution on the occupied cells, and patch
attention against attention computed patch by patch by hand."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttt_jax.models import point_ops as P
from ttt_jax.models import serialization as S


def _cloud(n=40, valid_n=30, side=6, seed=0):
  rng = np.random.default_rng(seed)
  cells = rng.choice(side ** 3, size=n, replace=False)      # one point per cell
  g = np.stack(np.unravel_index(cells, (side,) * 3), -1).astype(np.int32)
  return g, np.arange(n) < valid_n


def test_neighbours_by_hand():
  g = np.array([[1, 1, 1], [2, 1, 1], [1, 1, 0], [5, 5, 5]], np.int32)
  valid = np.array([True, True, True, False])
  nbr = np.asarray(P.neighbours(jnp.asarray(g), jnp.asarray(valid), 3))
  k = {tuple(o): i for i, o in enumerate(P.OFFSETS_3.tolist())}
  assert nbr[0, k[(0, 0, 0)]] == 0 and nbr[0, k[(1, 0, 0)]] == 1 and nbr[0, k[(0, 0, -1)]] == 2
  assert nbr[1, k[(-1, 0, 0)]] == 0 and nbr[2, k[(0, 0, 1)]] == 0
  assert (nbr[0] >= 0).sum() == 3 and (nbr[3] == -1).all()       # padding: none, and never found


def test_submanifold_conv_equals_dense_conv_at_occupied_cells():
  side, cin, cout = 6, 3, 5
  g, valid = _cloud(side=side)
  x = np.random.default_rng(1).normal(size=(len(g), cin)).astype(np.float32)
  nbr = P.neighbours(jnp.asarray(g), jnp.asarray(valid), 3)
  conv = P.SubMConv3d(cout)
  params = conv.init(jax.random.key(0), jnp.asarray(x), nbr)
  y = np.asarray(conv.apply(params, jnp.asarray(x), nbr))
  w = np.asarray(params["params"]["kernel"]).reshape(3, 3, 3, cin, cout)   # offsets -1..1 per axis
  dense = np.zeros((1, side, side, side, cin), np.float32)
  dense[0, g[valid, 0], g[valid, 1], g[valid, 2]] = x[valid]
  out = jax.lax.conv_general_dilated(dense, w, (1, 1, 1), "SAME",
                                     dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))[0]
  np.testing.assert_allclose(y[valid], np.asarray(out)[g[valid, 0], g[valid, 1], g[valid, 2]], atol=1e-5)


def test_patch_attention_is_attention_within_each_patch_of_the_serialised_order():
  g, valid = _cloud(n=16, valid_n=13)
  x = np.random.default_rng(2).normal(size=(16, 8)).astype(np.float32)
  _, perm, inv = S.serialize(jnp.asarray(g), jnp.asarray(valid), "hilbert", 3)
  att = P.PatchAttention(channels=8, heads=2, patch=4)
  params = att.init(jax.random.key(0), jnp.asarray(x), jnp.asarray(valid), perm, inv)
  y = np.asarray(att.apply(params, jnp.asarray(x), jnp.asarray(valid), perm, inv))

  p = jax.tree.map(np.asarray, params["params"])
  perm = np.asarray(perm)
  want = np.zeros_like(y)
  for start in range(0, 16, 4):
    rows = perm[start:start + 4]
    keep = rows[valid[rows]]                                    # padding rows are no keys
    qkv = x[rows] @ p["qkv"]["kernel"] + p["qkv"]["bias"]
    kv = x[keep] @ p["qkv"]["kernel"] + p["qkv"]["bias"]
    heads = []
    for h in range(2):
      q = qkv[:, h * 4:(h + 1) * 4]
      k = kv[:, 8 + h * 4:8 + (h + 1) * 4]
      v = kv[:, 16 + h * 4:16 + (h + 1) * 4]
      a = np.exp(q @ k.T / 2.0)
      heads.append((a / a.sum(1, keepdims=True)) @ v)
    # qkv columns are laid out (3, heads, d): q = [0:8], k = [8:16], v = [16:24].
    want[rows] = np.concatenate(heads, 1) @ p["proj"]["kernel"] + p["proj"]["bias"]
  np.testing.assert_allclose(y[valid], want[valid], atol=1e-5)


def test_patch_attention_needs_a_padded_scene():
  x = jnp.zeros((10, 8))
  with pytest.raises(ValueError, match="10 points is not a multiple of the attention patch 4"):
    P.PatchAttention(8, 2, 4).init(jax.random.key(0), x, jnp.ones(10, bool), jnp.arange(10), jnp.arange(10))
