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
  loss = obj.contrast_loss(feat, objs, p1)
  logits = np.asarray(jnp.einsum("nhwd,kd->nhwk", feat, p1))[..., :2]
  lsm = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  # ditta/tta.py `cross_entropy`: the mean over all 4 pixels, the object-less one as 0
  # (a mean over the 3 object pixels, as before, gives 4/3 of this).
  np.testing.assert_allclose(loss, -(lsm[0, 0, 0, 0] + lsm[0, 0, 1, 0] + lsm[0, 1, 0, 1]) / 4, rtol=1e-5)


def test_contrast_negatives_are_the_current_frames_objects_only():
  """The reference's logits are over the prototypes of the objects present in the
  frame: a prototype seen on an earlier frame (object 2 here) is no negative."""
  feat = obj.l2n(jax.random.normal(jax.random.key(2), (1, 2, 2, 3)))
  protos = obj.l2n(jax.random.normal(jax.random.key(3), (3, 3)))
  objs = jnp.array([[[0, 0], [1, 1]]])
  loss = obj.contrast_loss(feat, objs, protos, 0.5)
  lo = np.asarray(jnp.einsum("nhwd,kd->nhwk", feat, protos))[0, ..., :2] / 0.5
  lsm = lo - np.log(np.exp(lo).sum(-1, keepdims=True))
  want = -(lsm[0, 0, 0] + lsm[0, 1, 0] + lsm[1, 0, 1] + lsm[1, 1, 1]) / 4
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  lo3 = np.asarray(jnp.einsum("nhwd,kd->nhwk", feat, protos))[0] / 0.5   # all three: differs
  lsm3 = lo3 - np.log(np.exp(lo3).sum(-1, keepdims=True))
  assert abs(float(loss) + (lsm3[0, 0, 0] + lsm3[0, 1, 0] + lsm3[1, 0, 1] + lsm3[1, 1, 1]) / 4) > 1e-3


def test_prototype_reliability_is_the_entropy_of_softmaxed_probabilities():
  """ditta/tta.py: softmax_entropy(prob_mo), prob_mo already probabilities, then min-max."""
  probs = jax.nn.softmax(jax.random.normal(jax.random.key(4), (1, 3, 3, 5)) * 3)
  p2 = np.asarray(jax.nn.softmax(probs))
  e = -(p2 * np.log(p2)).sum(-1)
  want = 1 - (e - e.min()) / (e.max() - e.min())
  got = obj.minmax(obj.prototype_reliability(probs, double_softmax=True))
  np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-5)
  p1 = np.asarray(probs)
  e1 = -(p1 * np.log(p1)).sum(-1)
  single = obj.minmax(obj.prototype_reliability(probs, double_softmax=False))
  np.testing.assert_allclose(single[0], (1 - (e1 - e1.min()) / (e1.max() - e1.min()))[0], rtol=1e-4, atol=1e-5)


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


def test_score_zero_objects_are_painted_without_a_class_and_iss_fills_the_rest():
  """ditta/sam2_target.py `_render` paints every object; `target_to_label` gives a
  score-0 object no class; ditta/tta.py fills every class-less pixel with the ISS
  prediction (`distill_label = iss_pred.clone(); distill_label[keep] = label[keep]`)."""
  masks = np.zeros((1, 2, 2, 3), bool)
  masks[0, 0] = [[True, True, False], [False, False, False]]
  masks[0, 1] = [[False, True, True], [False, False, False]]   # score 0, painted first
  cls_map, obj_map = ditta_targets.paint(masks, np.array([4, 6]), np.array([0.3, 0.0]))
  np.testing.assert_array_equal(obj_map[0], [[0, 0, 1], [255, 255, 255]])
  np.testing.assert_array_equal(cls_map[0], [[4, 4, 255], [255, 255, 255]])
  probs = np.zeros((1, 2, 3, 8), np.float32)
  probs[0, ..., 2] = 1.0
  probs[0, 1, 0] = np.eye(8)[7]
  label = ditta_targets.fill_with_iss(cls_map, probs)
  np.testing.assert_array_equal(label[0], [[4, 4, 2], [7, 2, 2]])   # every pixel supervised
