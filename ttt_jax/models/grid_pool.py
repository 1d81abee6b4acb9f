"""Grid pooling and unpooling of serialised point clouds at static shapes.

Pooling by 2 merges the points whose grid cells share a parent cell one level up,
i.e. whose curve codes agree after `code >> 3` (see `serialization`); features are
reduced over each cluster (max of features, mean of coordinates, as PTv3 does) and
unpooling copies a cluster's value back to its points. Shapes never change: a
pooled cloud keeps `N` rows, the first `K` valid (K clusters, in curve order), so one
compiled program serves every scene.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ttt_jax.models.serialization import PAD_CODE


def clusters(code_N: jax.Array, valid_N: jax.Array, levels: int = 1):
  """`(cluster_N, cluster_valid_N, parent_code_N)`.

  cluster_N: each point's cluster index (clusters numbered along the curve; padding
    points share the index K, which is not valid);
  cluster_valid_N: whether row k of a pooled array is a cluster (k < K);
  parent_code_N: each cluster's code one level up (`PAD_CODE` past K).
  """
  n = code_N.shape[0]
  parent = jnp.where(valid_N, code_N >> (3 * levels), PAD_CODE)
  perm = jnp.argsort(parent, stable=True)
  sorted_parent = parent[perm]
  first = jnp.concatenate([jnp.ones((1,), bool), sorted_parent[1:] != sorted_parent[:-1]])
  cluster_sorted = jnp.cumsum(first.astype(jnp.int32)) - 1
  cluster = jnp.zeros((n,), jnp.int32).at[perm].set(cluster_sorted)
  k = jnp.sum(first & (sorted_parent != PAD_CODE))
  cluster_valid = jnp.arange(n) < k
  parent_code = jax.ops.segment_min(parent, cluster, num_segments=n)
  return cluster, cluster_valid, jnp.where(cluster_valid, parent_code, PAD_CODE)


def pool(x_NC: jax.Array, cluster_N: jax.Array, valid_N: jax.Array, cluster_valid_N: jax.Array,
         reduce: str = "max") -> jax.Array:
  """Reduces `x` over each cluster: `N, C`, rows past K are 0."""
  n = x_NC.shape[0]
  if reduce == "max":
    lowest = jnp.finfo(x_NC.dtype).min
    y = jax.ops.segment_max(jnp.where(valid_N[:, None], x_NC, lowest), cluster_N, num_segments=n)
  elif reduce == "mean":
    s = jax.ops.segment_sum(jnp.where(valid_N[:, None], x_NC, 0), cluster_N, num_segments=n)
    c = jax.ops.segment_sum(valid_N.astype(x_NC.dtype), cluster_N, num_segments=n)
    y = s / jnp.maximum(c, 1)[:, None]
  else:
    raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
  return jnp.where(cluster_valid_N[:, None], y, 0)


def unpool(coarse_NC: jax.Array, cluster_N: jax.Array) -> jax.Array:
  """Each point gets its cluster's row: `N, C`."""
  return coarse_NC[cluster_N]
