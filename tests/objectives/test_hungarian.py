"""The pure-JAX Hungarian matcher against scipy's linear_sum_assignment."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from ttt_jax.objectives.hungarian import hungarian_match

match = jax.jit(hungarian_match)


def test_optimal_on_random_costs_square_rectangular_and_tied():
  rng = np.random.default_rng(0)
  shapes = [(1, 1), (5, 5), (9, 4), (8, 8)]   # few shapes: one compilation each
  for t in range(60):
    q, g = shapes[t % len(shapes)]
    cost = rng.normal(size=(q, g)).astype(np.float32)
    if t % 3 == 0:   # many ties
      cost = rng.integers(0, 3, size=(q, g)).astype(np.float32)
    got = np.asarray(match(jnp.asarray(cost)))
    assert len(set(got.tolist())) == g, f"case {t}: a query matched twice: {got}"
    rows, cols = linear_sum_assignment(cost.T)
    np.testing.assert_allclose(cost[got, np.arange(g)].sum(), cost.T[rows, cols].sum(), atol=1e-5,
                               err_msg=f"case {t}: not a minimum-cost assignment")
    if t % 3:   # continuous costs: the optimum is unique
      np.testing.assert_array_equal(got, cols)


def test_padded_targets_do_not_change_the_real_assignment_and_vmap():
  rng = np.random.default_rng(1)
  cost = rng.normal(size=(5, 12, 7)).astype(np.float32)
  valid = np.ones((5, 7), bool)
  valid[:, 4:] = False
  got = np.asarray(jax.jit(jax.vmap(hungarian_match))(jnp.asarray(cost), jnp.asarray(valid)))
  for b in range(5):
    _, cols = linear_sum_assignment(cost[b, :, :4].T)
    np.testing.assert_array_equal(got[b, :4], cols)
    assert len(set(got[b].tolist())) == 7


def test_more_targets_than_queries_is_refused():
  with pytest.raises(ValueError, match="targets but only"):
    hungarian_match(jnp.zeros((3, 4)))
