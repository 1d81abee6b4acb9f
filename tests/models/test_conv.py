"""The scan-friendly convolution: same values and gradients as the native one."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ttt_jax.models.conv import conv2d

CASES = {  # kernel, stride, groups, cin, cout, padding: every conv SegFormer uses
    "patch_embed_7x7_s4": ((7, 7), (4, 4), 1, 4, 8, ((3, 3), (3, 3))),
    "patch_embed_3x3_s2": ((3, 3), (2, 2), 1, 8, 16, ((1, 1), (1, 1))),
    "depthwise_3x3": ((3, 3), (1, 1), 16, 16, 16, ((1, 1), (1, 1))),
    "spatial_reduction_4x4_s4": ((4, 4), (4, 4), 1, 8, 8, "VALID"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_native(name):
  k, s, g, cin, cout, pad = CASES[name]
  x = jax.random.normal(jax.random.key(0), (2, 17, 19, cin))
  w = jax.random.normal(jax.random.key(1), (*k, cin // g, cout)) * 0.1
  native = lambda x, w: lax.conv_general_dilated(
      x, w, s, pad, dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=g)
  ours = lambda x, w: conv2d(x, w, s, pad, g)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  np.testing.assert_array_equal(ours(x, w), native(x, w))
  gx, gw = jax.grad(loss(ours), (0, 1))(x, w)
  rx, rw = jax.grad(loss(native), (0, 1))(x, w)
  np.testing.assert_allclose(gx, rx, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(gw, rw, rtol=1e-4, atol=1e-4)


def test_gradient_inside_scan_matches():
  k, s, g, cin, cout, pad = CASES["depthwise_3x3"]
  x = jax.random.normal(jax.random.key(0), (3, 2, 8, 8, cin))
  w = jax.random.normal(jax.random.key(1), (*k, 1, cout))
  f = lambda w, x: jnp.sum(conv2d(x, w, s, pad, g) ** 2)

  def body(w, x):
    return w - 0.01 * jax.grad(f)(w, x), None

  scanned, _ = jax.jit(lambda w, xs: jax.lax.scan(body, w, xs))(w, x)
  looped = w
  for i in range(3):
    looped, _ = body(looped, x[i])
  np.testing.assert_allclose(scanned, looped, rtol=1e-5, atol=1e-5)
