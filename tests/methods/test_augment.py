"""Training-time augmentation: per-sample crops and SegFormer's colour jitter."""
import jax
import jax.numpy as jnp
import numpy as np

from ttt_jax.methods.augment import photometric_distortion


def test_photometric_distortion_per_sample_in_range_and_identity_at_zero_strength():
  imgs = jax.random.uniform(jax.random.key(0), (8, 6, 5, 3), minval=0, maxval=255)
  out = photometric_distortion(jax.random.key(1), imgs)
  assert out.shape == imgs.shape and out.dtype == jnp.float32
  assert float(out.min()) >= 0 and float(out.max()) <= 255
  np.testing.assert_array_equal(out, photometric_distortion(jax.random.key(1), imgs))  # keyed
  delta = np.asarray(out - imgs).reshape(8, -1)
  assert (np.abs(delta).max(1) > 1e-3).any()
  assert len(np.unique(np.round(delta.mean(1), 2))) > 2    # each sample draws its own jitter
  assert not np.allclose(out, photometric_distortion(jax.random.key(2), imgs))
  same = photometric_distortion(jax.random.key(1), imgs, brightness=0.0, contrast=(1.0, 1.0),
                                saturation=(1.0, 1.0))
  np.testing.assert_allclose(same, imgs, atol=1e-3)
  # Saturation 0 is the grey image (BT.601 weights), brightness shifts every channel alike.
  grey = photometric_distortion(jax.random.key(3), imgs, brightness=0.0, contrast=(1.0, 1.0),
                                saturation=(0.0, 0.0))
  flat = np.asarray(grey).reshape(8, -1, 3)
  on = flat.std(-1).max(-1) < 1e-3
  assert on.any() and not on.all()
  np.testing.assert_allclose(flat[on][..., 0], (np.asarray(imgs).reshape(8, -1, 3)[on]
                                               @ np.array([0.299, 0.587, 0.114])), atol=1e-2)
