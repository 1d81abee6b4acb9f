"""Mask2Former's set loss: point sampling against torch's grid_sample, costs and
losses against hand computations, matching of a perfect prediction."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttt_jax.objectives.set_loss import SetLossConfig, dice_loss, match_cost, point_sample, set_loss

torch = pytest.importorskip("torch")


def test_point_sample_is_grid_sample_without_align_corners():
  rng = np.random.default_rng(0)
  maps = rng.normal(size=(3, 5, 7)).astype(np.float32)
  xy = rng.uniform(-0.1, 1.1, size=(3, 11, 2)).astype(np.float32)   # some outside: zeros padding
  want = torch.nn.functional.grid_sample(torch.from_numpy(maps)[:, None], torch.from_numpy(2 * xy - 1)[:, None],
                                         align_corners=False)[:, 0, 0].numpy()
  np.testing.assert_allclose(np.asarray(point_sample(jnp.asarray(maps), jnp.asarray(xy))), want, atol=1e-5)


def test_match_cost_and_dice_by_hand():
  cfg = SetLossConfig(class_weight=2.0, mask_weight=5.0, dice_weight=5.0)
  cls = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])       # 2 queries, 2 classes + no object
  mask = jnp.array([[[3.0, -3.0]], [[-1.0, 2.0]]])            # 1 x 2 maps
  tgt = jnp.array([[[1.0, 0.0]]])
  xy = jnp.array([[0.25, 0.5], [0.75, 0.5]])                  # the two pixel centres
  got = np.asarray(match_cost(cls, mask, jnp.array([0]), tgt, xy, cfg))
  sig = lambda x: 1 / (1 + np.exp(-x))
  want = []
  for q, (logits, m) in enumerate(zip(np.asarray(cls), np.asarray(mask)[:, 0])):
    p = np.exp(logits) / np.exp(logits).sum()
    bce = np.mean([-np.log(sig(m[0])), -np.log(1 - sig(m[1]))])
    s = sig(m)
    dice = 1 - (2 * s[0] + 1) / (s.sum() + 1 + 1)
    want.append(2 * -p[0] + 5 * bce + 5 * dice)
  np.testing.assert_allclose(got[:, 0], want, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(dice_loss(jnp.array([[0.0, 0.0]]), jnp.array([[1.0, 0.0]]))),
                             [1 - (2 * 0.5 + 1) / (1 + 1 + 1)], rtol=1e-6)


def test_matching_class_weights_mask_losses_and_gradients():
  """One image with a perfect mask on query 3 (matching must pick it; class loss as
  torch's weighted cross-entropy; near-zero mask losses) and one image without targets
  (no mask gradient); targets at another resolution than the logits."""
  rng = np.random.default_rng(2)
  b, q, k, h = 2, 5, 4, 32
  cls = rng.normal(size=(1, b, q, k)).astype(np.float32)
  masks = np.zeros((b, 2, 2 * h, 2 * h), np.float32)
  masks[0, 0, :h] = 1
  logits = np.full((1, b, q, h, h), -8.0, np.float32)
  logits[0, 0, 3, :h // 2] = 8.0
  labels = np.array([[1, -1], [-1, -1]])
  cfg = SetLossConfig(num_points=256, match_points=64, importance=0.0)   # uniform points
  (loss, t), grads = jax.jit(jax.value_and_grad(
      lambda c, m: set_loss(jax.random.key(0), c, m, jnp.asarray(labels), jnp.asarray(masks), cfg),
      argnums=(0, 1), has_aux=True))(jnp.asarray(cls), jnp.asarray(logits))
  assert int(t["matches_BG"][0, 0]) == 3
  target = np.full((b, q), k - 1)
  target[0, 3] = 1
  w = torch.ones(k)
  w[-1] = 0.1
  want = torch.nn.functional.cross_entropy(torch.from_numpy(cls[0]).permute(0, 2, 1), torch.from_numpy(target), w)
  np.testing.assert_allclose(float(t["class"]), float(want), rtol=1e-5)
  # Only points within half a pixel of the mask's edge or the image border (zero padding)
  # see interpolated logits and targets; chance is 0.69.
  assert float(t["mask"]) < 0.1 and float(t["dice"]) < 0.05, "a perfect mask has near-zero mask losses"
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)
  assert float(jnp.abs(grads[1][:, 1]).sum()) == 0.0, "an image without targets gets no mask gradient"
