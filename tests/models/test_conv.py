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


@pytest.mark.parametrize("k,pad", [(3, ((1, 1), (1, 1))), (5, ((2, 2), (2, 2))), (3, ((0, 0), (0, 0)))])
def test_depthwise_shift_conv_matches_native(k, pad):
  from ttt_jax.models.conv import depthwise_conv2d
  c = 12
  x = jax.random.normal(jax.random.key(0), (2, 9, 11, c))
  w = jax.random.normal(jax.random.key(1), (k, k, 1, c))
  native = lambda x, w: lax.conv_general_dilated(
      x, w, (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)
  np.testing.assert_allclose(depthwise_conv2d(x, w, pad), native(x, w), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  got = jax.grad(loss(lambda x, w: depthwise_conv2d(x, w, pad)), (0, 1))(x, w)
  ref = jax.grad(loss(native), (0, 1))(x, w)
  for a, b in zip(got, ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_patchify_conv_matches_native():
  from ttt_jax.models.conv import patchify_conv2d
  x = jax.random.normal(jax.random.key(0), (2, 17, 16, 6))
  w = jax.random.normal(jax.random.key(1), (4, 4, 6, 5))
  native = lambda x, w: lax.conv_general_dilated(x, w, (4, 4), "VALID",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(patchify_conv2d(x, w), native(x, w), rtol=1e-5, atol=1e-5)
  got = jax.grad(lambda w: jnp.sum(jnp.sin(patchify_conv2d(x, w))))(w)
  ref = jax.grad(lambda w: jnp.sum(jnp.sin(native(x, w))))(w)
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
