"""The add-on's local window attention against a brute-force loop."""
import jax
import numpy as np

from ttt_jax.models.temporal_addon import TemporalAddon, local_window_attention


def test_local_window_attention_matches_brute_force():
  k = jax.random.split(jax.random.key(0), 3)
  q = np.asarray(jax.random.normal(k[0], (2, 5, 6, 4)))
  kk = np.asarray(jax.random.normal(k[1], (2, 5, 6, 4)))
  v = np.asarray(jax.random.normal(k[2], (2, 5, 6, 3)))
  out = np.asarray(local_window_attention(q, kk, v, 1))
  ref = np.zeros_like(v)
  for n in range(2):
    for y in range(5):
      for x in range(6):
        nb = [(y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
              if 0 <= y + dy < 5 and 0 <= x + dx < 6]
        s = np.array([q[n, y, x] @ kk[n, a, b] for a, b in nb])   # plain dot product, no 1/sqrt(d)
        p = np.exp(s - s.max())
        ref[n, y, x] = (p[:, None] * np.array([v[n, a, b] for a, b in nb])).sum(0) / p.sum()
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_addon_shapes_and_finite_gradients():
  m = TemporalAddon(dim=8, radius=2)
  f = jax.random.normal(jax.random.key(1), (1, 4, 4, 6))
  lo = jax.random.normal(jax.random.key(2), (1, 4, 4, 5))
  params = m.init(jax.random.key(0), f, f, lo)
  out = m.apply(params, f, f, lo)
  assert out.shape == (1, 4, 4, 5)
  g = jax.grad(lambda p: m.apply(p, f, f, lo).sum())(params)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(g))


def test_addon_and_projection_start_from_pytorchs_default_init():
  """The reference's add-on and projection are nn.Linear / 1x1 nn.Conv2d with PyTorch's
  default init: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases non-zero."""
  import jax.numpy as jnp
  from ttt_jax.models.temporal_addon import ProjectionHead
  d, fan_in = 256, 64
  f = jnp.zeros((1, 4, 4, fan_in))
  p = ProjectionHead(dim=d).init(jax.random.key(0), f)["params"]
  bound = 1 / np.sqrt(fan_in)
  for leaf in (p["fc1"]["kernel"], p["fc1"]["bias"]):
    a = np.asarray(leaf)
    assert np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound, a.max()
    np.testing.assert_allclose(a.std(), bound / np.sqrt(3), rtol=0.15)   # uniform's std
  a = np.asarray(p["fc2"]["bias"])
  assert np.abs(a).max() <= 1 / np.sqrt(d) and np.abs(a).min() >= 0 and np.any(a != 0)
  q = TemporalAddon(dim=d, radius=1).init(jax.random.key(1), f, f, jnp.zeros((1, 4, 4, 3)))["params"]
  assert np.abs(np.asarray(q["query"]["fc1"]["bias"])).max() > 0.5 / np.sqrt(fan_in)
