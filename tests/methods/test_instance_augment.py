"""CAST's training augmentation (Mask2Former's scale jitter, crop or pad, colour, flip)."""
import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from ttt_jax.methods.instance_augment import InstanceAugment, augment_instances, scale_shift
from ttt_jax.models.inputs import MEAN_RGB


def _scene(b=2, hw=(32, 40)):
  """Images painted with one colour per instance (three boxes) on black, their masks and labels."""
  h, w = hw
  img = np.zeros((b, h, w, 3), np.float32)
  masks = np.zeros((b, 4, h, w), bool)
  boxes = [(2, 2, 12, 14), (14, 20, 30, 38), (4, 24, 12, 36)]
  colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]
  for g, ((y0, x0, y1, x1), col) in enumerate(zip(boxes, colours)):
    masks[:, g, y0:y1, x0:x1] = True
    img[:, y0:y1, x0:x1] = col
  labels = np.tile(np.array([[0, 1, 2, -1]], np.int32), (b, 1))
  return img, labels, masks


def test_off_is_the_identity():
  img, labels, masks = _scene()
  off = InstanceAugment(min_scale=1.0, max_scale=1.0, colour=False, flip=False)
  a, l, m = augment_instances(jax.random.key(0), jnp.asarray(img), jnp.asarray(labels), jnp.asarray(masks), off)
  np.testing.assert_array_equal(np.asarray(a), img)
  np.testing.assert_array_equal(np.asarray(l), labels)
  np.testing.assert_array_equal(np.asarray(m), masks)


def test_enlarging_is_bilinear_resampling_of_a_window():
  """s = 2 and a shift: each output pixel o reads the input at (o + 0.5 - t) / s - 0.5
  (pixel centres), bilinearly: scipy's map_coordinates away from the border."""
  rng = np.random.default_rng(0)
  img = ndimage.gaussian_filter(rng.random((1, 24, 28, 3)) * 255, (0, 2, 2, 0)).astype(np.float32)
  s, t = 2.0, np.array([-9.0, -13.0], np.float32)
  got, _ = scale_shift(jnp.asarray(img), [], jnp.array([s]), jnp.asarray(t)[None])
  oy, ox = np.mgrid[0:24, 0:28].astype(np.float64)
  iy, ix = (oy + 0.5 - t[0]) / s - 0.5, (ox + 0.5 - t[1]) / s - 0.5
  want = np.stack([ndimage.map_coordinates(img[0, ..., c].astype(np.float64), [iy, ix], order=1) for c in range(3)], -1)
  inside = (iy >= 0) & (iy <= 23) & (ix >= 0) & (ix <= 27)
  assert inside.sum() > 400
  np.testing.assert_allclose(np.asarray(got)[0][inside], want[inside], atol=1e-2)


def test_shrinking_pads_with_the_mean_colour_and_keeps_the_image_in_the_canvas():
  img = np.full((1, 32, 32, 3), 255.0, np.float32)
  got, (m,) = scale_shift(jnp.asarray(img), [jnp.ones((1, 1, 8, 8), bool)], jnp.array([0.5]),
                          jnp.array([[4.0, 12.0]]))
  got, m = np.asarray(got)[0], np.asarray(m)[0, 0]
  np.testing.assert_allclose(got[4:20, 12:28], 255.0, atol=1e-3)          # the 16 x 16 image
  pad = np.ones((32, 32), bool)
  pad[4:20, 12:28] = False
  np.testing.assert_allclose(got[pad], np.broadcast_to(MEAN_RGB, got[pad].shape), atol=1e-3)
  want = np.zeros((8, 8), bool)   # the mask at a quarter of the resolution moves a quarter as far
  want[1:5, 3:7] = True
  np.testing.assert_array_equal(m, want)


def test_targets_follow_the_image_and_emptied_instances_become_padding():
  """Over many draws (scale jitter, colour off so colours identify instances, flips):
  every kept mask's interior has its instance's colour; an instance the window left out
  is padding (-1) with an empty mask; kept instances have pixels."""
  img, labels, masks = _scene(b=64)
  aug = InstanceAugment(colour=False)
  a, l, m = jax.jit(augment_instances, static_argnums=4)(jax.random.key(1), jnp.asarray(img), jnp.asarray(labels),
                                                         jnp.asarray(masks), aug)
  a, l, m = np.asarray(a), np.asarray(l), np.asarray(m)
  colours = np.array([(250, 0, 0), (0, 250, 0), (0, 0, 250)], np.float32)
  dropped = 0
  for i in range(64):
    for g in range(3):
      if l[i, g] < 0:
        dropped += 1
        assert not m[i, g].any(), f"sample {i}: instance {g} is padding but has pixels"
        continue
      assert l[i, g] == g and m[i, g].any()
      core = ndimage.binary_erosion(m[i, g], iterations=2)
      if core.any():
        np.testing.assert_allclose(a[i][core], np.broadcast_to(colours[g], a[i][core].shape), atol=1.0,
                                   err_msg=f"sample {i}, instance {g}")
    assert l[i, 3] == -1 and not m[i, 3].any()
  assert 0 < dropped < 64 * 3, dropped    # enlarged windows leave some instances out, not all


def test_colour_jitter_changes_appearance_only():
  img, labels, masks = _scene(b=8)
  aug = InstanceAugment(min_scale=1.0, max_scale=1.0, colour=True, flip=False)
  a, l, m = augment_instances(jax.random.key(2), jnp.asarray(img), jnp.asarray(labels), jnp.asarray(masks), aug)
  np.testing.assert_array_equal(np.asarray(m), masks)
  np.testing.assert_array_equal(np.asarray(l), labels)
  a = np.asarray(a)
  assert a.min() >= 0 and a.max() <= 255 and not np.allclose(a, img)
