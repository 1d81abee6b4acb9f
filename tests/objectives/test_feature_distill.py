"""TTT-KD's distillation loss, against hand computations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttt_jax.objectives.feature_distill import feature_distill_loss


def test_cosine_distance_over_the_seen_points_only():
  s = jnp.array([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0], [1.0, 1.0]])
  t = jnp.array([[3.0, 0.0], [1.0, 0.0], [0.0, 0.0], [-1.0, -1.0]])
  views = jnp.array([2, 1, 0, 1])       # point 2 is unseen: no loss, whatever it holds
  valid = jnp.array([True, True, True, False])   # point 3 is padding
  # point 0: same direction (0); point 1: orthogonal (1) -> mean 0.5
  np.testing.assert_allclose(feature_distill_loss(s, t, views, valid), 0.5, rtol=1e-6)
  # with point 3 counted: opposite directions (2) -> (0 + 1 + 2) / 3
  np.testing.assert_allclose(feature_distill_loss(s, t, views), 1.0, rtol=1e-6)
  # mse: point 0 ((1-3)^2 + 0) / 2 = 2, point 1 (1 + 4) / 2 = 2.5
  np.testing.assert_allclose(feature_distill_loss(s, t, views, valid, distance="mse"), 2.25, rtol=1e-6)


def test_no_seen_point_gives_zero_loss_and_zero_gradient():
  s, t = jnp.ones((3, 4)), jnp.ones((3, 4))
  g = jax.grad(lambda s: feature_distill_loss(s, t, jnp.zeros(3, jnp.int32)))(s)
  assert float(feature_distill_loss(s, t, jnp.zeros(3, jnp.int32))) == 0.0 and not np.any(g)


def test_unknown_distance_is_refused():
  with pytest.raises(ValueError, match="unknown distillation distance 'l1'"):
    feature_distill_loss(jnp.ones((1, 2)), jnp.ones((1, 2)), jnp.ones(1, jnp.int32), distance="l1")
