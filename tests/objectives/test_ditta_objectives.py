"""DiTTA's pure losses, fusion and target painting against hand computations."""
import jax
import jax.numpy as jnp
import numpy as np

from ttt_jax.methods import ditta_targets
from ttt_jax.objectives import ditta as obj


def test_fuse_keeps_reliable_pixels_and_mixes_the_rest():
  p_plain = jnp.array([[[[1.0, 0.0], [0.7, 0.3], [0.5, 0.5]]]])   # pixel 0 certain, 1 not
  p_addon = jnp.array([[[[0.0, 1.0], [0.2, 0.8], [0.5, 0.5]]]])
  out = obj.fuse(p_plain, p_addon, 0.8)
  np.testing.assert_allclose(out[0, 0, 0], [1.0, 0.0])
  r_p, r_a = obj.reliability(p_plain)[0, 0, 1], obj.reliability(p_addon)[0, 0, 1]
  w = r_p / (r_p + r_a)
  np.testing.assert_allclose(out[0, 0, 1], w * p_plain[0, 0, 1] + (1 - w) * p_addon[0, 0, 1], rtol=1e-6)


def test_distill_loss_double_softmax_and_ignored_pixels_count_as_zero():
  logits = jax.random.normal(jax.random.key(0), (1, 2, 3, 4))
  tgt = jnp.array([[[0, 1, 255], [3, 255, 2]]])
  valid = np.asarray(tgt != 255)
  for double in (True, False):
    z = jax.nn.softmax(logits) if double else logits
    nll = -np.take_along_axis(np.asarray(jax.nn.log_softmax(z)), np.where(valid, tgt, 0)[..., None], -1)[..., 0]
    want = nll[valid].sum() / 6
    np.testing.assert_allclose(obj.distill_loss(logits, tgt, double_softmax=double), want, rtol=1e-6)


def test_prototypes_running_average_and_contrast():
  feat = obj.l2n(jax.random.normal(jax.random.key(1), (1, 2, 2, 3)))
  rel = jnp.array([[[0.0, 1.0], [0.5, 1.0]]])
  objs = jnp.array([[[0, 0], [1, 255]]])
  protos, seen = jnp.zeros((4, 3)), jnp.zeros(4, bool)
  p1, s1 = obj.update_prototypes(feat, rel, objs, protos, seen)
  w = np.asarray(obj.minmax(rel))[0]
  want0 = (w[0, 0] * feat[0, 0, 0] + w[0, 1] * feat[0, 0, 1]) / 2
  np.testing.assert_allclose(p1[0], want0 / np.linalg.norm(want0), rtol=1e-5)
  assert s1.tolist() == [True, True, False, False]
  p2, _ = obj.update_prototypes(feat, rel, objs, p1, s1)
  np.testing.assert_allclose(p2[0], p1[0], rtol=1e-5)     # normalise((p + p) / 2) = p
  loss = obj.contrast_loss(feat, objs, p1, s1)
  logits = np.asarray(jnp.einsum("nhwd,kd->nhwk", feat, p1))[..., :2]
  lsm = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  np.testing.assert_allclose(loss, -(lsm[0, 0, 0, 0] + lsm[0, 0, 1, 0] + lsm[0, 1, 0, 1]) / 3, rtol=1e-5)


def test_class_scores_formula_and_painting_order():
  probs = np.zeros((1, 2, 2, 3), np.float32)
  probs[0, 0, 0] = [0.9, 0.05, 0.05]
  probs[0, 0, 1] = [0.9, 0.05, 0.05]
  probs[0, 1, 0] = [0.1, 0.8, 0.1]
  probs[0, 1, 1] = [1 / 3, 1 / 3, 1 / 3]
  masks = np.zeros((1, 2, 2, 2), bool)
  masks[0, 0] = [[True, True], [True, False]]    # two class-0 pixels, one class-1
  masks[0, 1] = [[False, True], [False, False]]  # one class-0 pixel
  s = ditta_targets.class_scores(masks, probs)
  rel = ditta_targets.reliability_np(probs)[0]
  share = np.array([3, 1, 0]) / 4                # the uniform pixel's argmax is class 0
  want00 = rel[0, :2].mean() * (2 / 3) ** 0.3 * (1 - share[0]) ** 0.8
  want01 = rel[1, 0] * (1 / 3) ** 0.3 * (1 - share[1]) ** 0.8
  np.testing.assert_allclose(s[0, :2], [want00, want01], rtol=1e-5)
  cls_map, obj_map = ditta_targets.paint(masks, np.array([0, 2]), np.array([0.5, 0.1]))
  assert obj_map[0, 0, 1] == 0 and cls_map[0, 0, 1] == 0     # the higher score is painted last
  assert obj_map[0, 1, 1] == 255 and cls_map[0, 1, 1] == 255  # outside every object: ignored
