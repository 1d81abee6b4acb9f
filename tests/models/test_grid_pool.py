"""Grid pooling at static shapes against numpy's unique on random padded clouds."""
import jax.numpy as jnp
import numpy as np
import pytest

from ttt_jax.models import grid_pool as G
from ttt_jax.models import serialization as S


@pytest.mark.parametrize("order", ["z", "hilbert"])
def test_pooling_merges_points_of_one_parent_cell(order):
  rng = np.random.default_rng(0)
  n, valid_n = 64, 50
  g = rng.integers(0, 8, (n, 3)).astype(np.int32)
  valid = np.arange(n) < valid_n
  feats = rng.normal(size=(n, 4)).astype(np.float32)
  code = S.encode(jnp.asarray(g), order, 3)
  cluster, cvalid, parent = G.clusters(code, jnp.asarray(valid))
  cluster, cvalid, parent = map(np.asarray, (cluster, cvalid, parent))

  want_parent, inverse = np.unique(np.asarray(code)[valid] >> 3, return_inverse=True)
  k = len(want_parent)
  assert cvalid.sum() == k and cvalid[:k].all()
  np.testing.assert_array_equal(parent[:k], want_parent)                  # clusters in curve order
  np.testing.assert_array_equal(cluster[valid], inverse)
  assert (cluster[~valid] == k).all()                                     # padding: no valid cluster
  # Points of one cluster share a parent cell (grid coordinates halved).
  for c in range(k):
    assert len({tuple(r) for r in (g[valid][inverse == c] >> 1)}) == 1

  mx = np.asarray(G.pool(jnp.asarray(feats), jnp.asarray(cluster), jnp.asarray(valid), jnp.asarray(cvalid)))
  mean = np.asarray(G.pool(jnp.asarray(feats), jnp.asarray(cluster), jnp.asarray(valid), jnp.asarray(cvalid), "mean"))
  for c in range(k):
    members = feats[valid][inverse == c]
    np.testing.assert_allclose(mx[c], members.max(0))
    np.testing.assert_allclose(mean[c], members.mean(0), rtol=1e-6)
  assert not mx[k:].any() and not mean[k:].any()
  back = np.asarray(G.unpool(jnp.asarray(mx), jnp.asarray(cluster)))
  np.testing.assert_array_equal(back[valid], mx[inverse])


def test_unknown_reduction_is_refused():
  with pytest.raises(ValueError, match="reduce must be 'max' or 'mean'"):
    G.pool(jnp.zeros((2, 1)), jnp.zeros(2, jnp.int32), jnp.ones(2, bool), jnp.ones(2, bool), "sum")
