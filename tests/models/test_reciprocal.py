"""The reciprocal-multiply normalisations: same values and gradients as the plain ones,
and the same bits under a sharded (SPMD) program as under a single-device one."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ttt_jax.models import reciprocal

_up = lambda x: jax.image.resize(x, (x.shape[0], 32, 32, x.shape[-1]), "bilinear")


def _inputs():
  k1, k2 = jax.random.split(jax.random.key(0))
  return jax.random.normal(k1, (2, 8, 8, 8)), jax.random.normal(k2, (2, 8, 8, 16))


def test_values_and_gradients_match_the_plain_formulas():
  logits, feat = _inputs()
  w = jnp.arange(8.0).reshape(1, 1, 1, 8)
  np.testing.assert_allclose(reciprocal.softmax(logits), jax.nn.softmax(logits), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(reciprocal.softmax(x) * w))(logits),
                             jax.grad(lambda x: jnp.sum(jax.nn.softmax(x) * w))(logits), rtol=1e-5, atol=1e-6)
  plain = feat / jnp.linalg.norm(feat, axis=-1, keepdims=True)
  np.testing.assert_allclose(reciprocal.l2_normalise(feat), plain, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(reciprocal.l2_normalise(jnp.zeros((3,))), 0.0)   # eps: no NaN at 0
  masked = jnp.array([[0.5, -jnp.inf, 2.0]])
  np.testing.assert_allclose(reciprocal.softmax(masked), jax.nn.softmax(masked), rtol=1e-6)
  assert np.all(np.isfinite(jax.grad(lambda x: jnp.sum(reciprocal.softmax(x) * jnp.arange(3.0)[None]))(masked)))


def test_a_sharded_program_computes_the_same_gradients_bit_for_bit():
  """DiTTA's double softmax and its normalise-resize-normalise features, differentiated
  in a 4-device shard_map (the video mesh's program) and in one jit. With plain division
  XLA:CPU on AMD EPYC differed by 2.4e-7 and 1.5e-5 here (and a DiTTA run in 1 pixel)."""
  logits, feat = _inputs()
  w8, w16 = jnp.arange(8.0).reshape(1, 1, 1, 8), jnp.arange(16.0).reshape(1, 1, 1, 16)
  r = reciprocal
  fns = {
      "log_softmax(softmax)": (lambda x: jnp.sum(jax.nn.log_softmax(r.softmax(x)) * w8), logits),
      "l2n(up(l2n))": (lambda f: jnp.sum(r.l2_normalise(_up(r.l2_normalise(f))) * w16), feat),
  }
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]), ("v",))
  put = NamedSharding(mesh, P("v"))
  for name, (fn, x) in fns.items():
    g = jax.grad(fn)
    single = np.asarray(jax.jit(g)(x))
    per_device = jax.shard_map(lambda xs: jax.lax.map(g, xs), mesh=mesh, in_specs=P("v"), out_specs=P("v"))
    sharded = np.asarray(jax.jit(per_device)(jax.device_put(jnp.stack([x] * 4), put)))
    for d in range(4):
      np.testing.assert_array_equal(sharded[d], single, err_msg=f"{name}: device {d} vs single-device jit")
