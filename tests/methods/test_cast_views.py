"""CAST's weak/strong views and instance inference."""
import colorsys

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from ttt_jax.methods import cast_views
from ttt_jax.methods.instance_predict import instance_predictions, pseudo_labels


def test_hsv_round_trip_matches_colorsys():
  rgb = np.random.default_rng(0).random((50, 3)).astype(np.float32)
  hsv = np.asarray(cast_views.rgb_to_hsv(jnp.asarray(rgb)))
  np.testing.assert_allclose(hsv, [colorsys.rgb_to_hsv(*p) for p in rgb], atol=1e-5)
  np.testing.assert_allclose(np.asarray(cast_views.hsv_to_rgb(jnp.asarray(hsv))), rgb, atol=1e-5)


def test_blur_is_a_reflect_padded_gaussian():
  img = np.random.default_rng(1).random((9, 11, 3)).astype(np.float32)
  got = np.asarray(cast_views._blur(jnp.asarray(img), 1.3))
  want = cv2.GaussianBlur(img, (5, 5), 1.3, borderType=cv2.BORDER_REFLECT_101)
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_views_stay_aligned_and_flips_follow_the_targets():
  img = np.zeros((2, 8, 8, 3), np.float32)
  img[:, :, :3] = 200.0   # a bright left band
  masks = np.zeros((2, 1, 8, 8), bool)
  masks[:, 0, :, :3] = True
  a, m = cast_views.random_flip(jax.random.key(3), (jnp.asarray(img), 2), (jnp.asarray(masks), 3))
  a, m = np.asarray(a), np.asarray(m)
  np.testing.assert_array_equal(a[..., 0] > 100, m[:, 0])
  s = np.asarray(cast_views.strong_view(jax.random.key(4), jnp.asarray(a)))
  assert s.shape == a.shape and s.min() >= 0 and s.max() <= 255.0 + 1e-3
  # The band's edge stays at the same columns: the strong view only changes appearance.
  edge = lambda x: np.abs(np.diff(x.mean(-1), axis=1)).mean(0).argmax()   # one image, H x W x 3
  for i in range(2):
    assert edge(s[i]) == edge(a[i]), f"image {i}: the strong view moved the edge"


def test_instance_inference_and_pseudo_labels():
  cls = jnp.array([[5.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 4.0, 0.0]])   # query 1 says no object
  masks = jnp.stack([jnp.full((4, 4), 6.0).at[2:].set(-6.0), jnp.full((4, 4), 6.0), jnp.full((4, 4), -6.0)])
  labels, scores, query = instance_predictions(cls, masks, 2)
  assert np.asarray(query)[0] == 0 and np.asarray(labels)[0] == 0
  p0 = np.exp(5) / (np.exp(5) + 2)
  np.testing.assert_allclose(float(scores[0]), p0 / (1 + np.exp(-6.0)), rtol=1e-5)   # class x mean sigmoid in mask
  lab, m, sc = pseudo_labels(cls, masks, 0.3, 4)
  np.testing.assert_array_equal(np.asarray(lab), [0, -1, -1, -1])   # query 2's mask is empty, query 1 is no object
  assert np.asarray(m)[0, :2].all() and not np.asarray(m)[1:].any()
