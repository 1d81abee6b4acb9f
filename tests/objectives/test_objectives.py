"""Objectives: masking as the reference does it, and the losses' values."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttt_jax.objectives.class_balance import class_drift, num_predicted_classes
from ttt_jax.objectives.entropy import entropy_loss
from ttt_jax.models.inputs import mask_input
from ttt_jax.objectives.reconstruction import patch_mask, reconstruction_loss
from ttt_jax.objectives.self_training import self_training_loss


def test_patch_mask_exact_ratio_and_patch_aligned():
  m = np.asarray(patch_mask(jax.random.key(0), 3, 64, 96, patch=16, ratio=0.85))
  assert m.shape == (3, 64, 96)
  cells = m.reshape(3, 4, 16, 6, 16)
  assert np.all(cells.min((2, 4)) == cells.max((2, 4)))  # whole 16x16 patches
  assert np.all(cells[:, :, 0, :, 0].sum((1, 2)) == round(0.85 * 24))
  assert not np.array_equal(m[0], m[1])  # an independent mask per sample


def test_masked_pixels_sit_at_the_mean_and_flag_channel():
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  m = patch_mask(jax.random.key(2), 2, 32, 32, ratio=0.5)
  x4 = np.asarray(mask_input(x, m))
  assert x4.shape == (2, 32, 32, 4)
  assert np.all(x4[..., :3][np.asarray(m) == 1] == 0)  # 0 after normalisation = mean colour
  np.testing.assert_array_equal(x4[..., 3], m)


def test_reconstruction_loss_variants():
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  perfect = lambda x4: x  # reconstructs the original exactly
  assert float(reconstruction_loss(perfect, x, jax.random.key(0))) == pytest.approx(0.0)
  zeros = lambda x4: jnp.zeros_like(x)
  full = float(reconstruction_loss(zeros, x, jax.random.key(0)))
  assert full == pytest.approx(float(jnp.mean(jnp.mean(x ** 2, -1))), rel=1e-6)
  # Masked-only: reconstructing the visible input back scores 0 on masked pixels' complement only.
  copy_input = lambda x4: x4[..., :3]
  assert float(reconstruction_loss(copy_input, x, jax.random.key(0), masked_only=True)) > 0.5
  assert float(reconstruction_loss(copy_input, x, jax.random.key(0))) < \
      float(reconstruction_loss(copy_input, x, jax.random.key(0), masked_only=True))


def test_entropy():
  uniform = jnp.zeros((1, 2, 2, 4))
  assert float(entropy_loss(uniform)) == pytest.approx(np.log(4), rel=1e-6)
  assert float(entropy_loss(jnp.array([[[[100.0, 0, 0, 0]]]]))) == pytest.approx(0.0, abs=1e-6)


def test_self_training_ignores_unconfident_pixels():
  x = jax.random.normal(jax.random.key(0), (1, 32, 32, 3))
  unsure = lambda x4: jnp.zeros((1, 8, 8, 3))
  assert float(self_training_loss(unsure, x, jax.random.key(0), threshold=0.9)) == 0.0
  sure = lambda x4: jnp.zeros((1, 8, 8, 3)).at[..., 1].set(10.0)
  assert float(self_training_loss(sure, x, jax.random.key(0))) == pytest.approx(
      float(-jax.nn.log_softmax(jnp.array([0.0, 10.0, 0.0]))[1]), abs=1e-6)


def test_class_balance_drift():
  a = jnp.zeros((4, 4, 3)).at[:2, :, 0].set(1).at[2:, :, 1].set(1)   # 2 classes
  b = jnp.zeros((4, 4, 3)).at[..., 0].set(1)                         # 1 class
  assert int(num_predicted_classes(a)) == 2
  assert not bool(class_drift(a, b, tolerance=1))
  assert bool(class_drift(a, b, tolerance=0))
