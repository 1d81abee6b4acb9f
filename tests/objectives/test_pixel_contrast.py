"""CAST's pixel contrast, piece by piece against hand computations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttt_jax.objectives import pixel_contrast as pc


def test_nt_xent_and_hinge_by_hand():
  pos = jnp.array([0.9, 0.1])
  neg = jnp.array([[0.5, -0.2], [0.3, 0.8]])
  t = 0.5
  want = np.mean([-np.log(np.exp(p / t) / (np.exp(p / t) + np.exp(n / t).sum())) for p, n in zip(pos, neg)])
  np.testing.assert_allclose(float(pc.nt_xent(pos, neg, t)), want, rtol=1e-6)
  hinge = np.maximum(np.asarray(neg) / t - 0.5, 0)
  want = np.mean([-np.log(np.exp(p / t) / (np.exp(p / t) + np.exp(h).sum())) for p, h in zip(pos, hinge)])
  np.testing.assert_allclose(float(pc.nt_xent(pos, neg, t, hinge=0.5)), want, rtol=1e-6)


def test_temperature_fixed_or_decaying():
  fixed = pc.ContrastConfig(temperature=0.2)
  assert float(pc.temperature(500, fixed)) == pytest.approx(0.2)
  dec = pc.ContrastConfig(temperature=0.3, final_temperature=0.07, decay_steps=100)
  assert [round(float(pc.temperature(s, dec)), 4) for s in (0, 50, 100, 200)] == [0.3, 0.185, 0.07, 0.07]


def test_pseudo_probabilities_by_hand():
  rng = np.random.default_rng(0)
  cls = rng.normal(size=(1, 3, 4)).astype(np.float32)
  mask = rng.normal(size=(1, 3, 2, 2)).astype(np.float32)
  m, c = pc.pseudo_probabilities(jnp.asarray(cls), jnp.asarray(mask), (2, 2))   # same grid: no resize
  sm = np.exp(mask.reshape(3, 4)) / np.exp(mask.reshape(3, 4)).sum(0)            # softmax over queries
  np.testing.assert_allclose(np.asarray(m)[0], sm.T, rtol=1e-5)
  pk = np.exp(cls[0]) / np.exp(cls[0]).sum(-1, keepdims=True)
  agg = sm.T @ pk
  np.testing.assert_allclose(np.asarray(c)[0], agg / (agg.sum(-1, keepdims=True) + 1e-6), rtol=1e-5)


def test_dissimilarity_per_sampler():
  am, ac = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 2.0]])
  cm, cc = jnp.array([[1.0, 0.0], [0.0, 3.0]]), jnp.array([[0.0, 1.0], [1.0, 0.0]])
  w = lambda s, p="paper": np.asarray(pc.dissimilarity((am, ac), (cm, cc), pc.ContrastConfig(sampler=s, pseudo=p)))
  np.testing.assert_allclose(w("mask")[0], [1e-6, 1 + 1e-6], rtol=1e-5)        # 1 - cos of the mask parts
  np.testing.assert_allclose(w("class")[0], [1e-6, 1 + 1e-6], rtol=1e-5)
  np.testing.assert_allclose(w("fusion")[0], [1e-6, 1 + 1e-6], rtol=1e-5)
  np.testing.assert_allclose(w("uniform")[0], [1, 1])
  np.testing.assert_allclose(w("class", "snapshot")[0], [0 + 1e-6, 1 + 1e-6], rtol=1e-5)  # clamp(1 - 2.0) = 0


def test_gumbel_top_k_draws_in_proportion_and_never_disallowed():
  w = jnp.array([[1.0, 2.0, 3.0, 4.0, 100.0]])
  allowed = jnp.array([[True, True, True, True, False]])
  keys = jax.random.split(jax.random.key(0), 4000)
  first = np.asarray(jax.vmap(lambda k: pc.gumbel_top_k(k, w, allowed, 1)[0, 0])(keys))
  assert not (first == 4).any(), "a disallowed candidate was drawn"
  np.testing.assert_allclose(np.bincount(first, minlength=5)[:4] / len(first), [0.1, 0.2, 0.3, 0.4], atol=0.03)
  two = np.asarray(jax.vmap(lambda k: pc.gumbel_top_k(k, w, allowed, 2)[0])(keys[:50]))
  assert (two[:, 0] != two[:, 1]).all(), "draws are without replacement"


def test_loss_takes_negatives_only_from_other_images_and_its_value():
  rng = np.random.default_rng(1)
  b, h, w, e = 3, 2, 2, 4
  zw = rng.normal(size=(b, h, w, e)).astype(np.float32)
  zs = rng.normal(size=(b, h, w, e)).astype(np.float32)
  cls = rng.normal(size=(b, 5, 3)).astype(np.float32)
  mask = rng.normal(size=(b, 5, 4, 4)).astype(np.float32)
  cfg = pc.ContrastConfig(num_negatives=8, temperature=0.5, sampler="uniform")   # all 8 other-image pixels
  loss, info = pc.pixel_contrast_loss(jax.random.key(0), jnp.asarray(zw), jnp.asarray(zs), jnp.asarray(cls),
                                      jnp.asarray(mask), 0, cfg)
  assert set(np.asarray(info["negatives"]).tolist()) == set(range(4, 12)), "anchor 0's negatives: images 1 and 2"
  u = lambda z: z / np.linalg.norm(z, axis=-1, keepdims=True)
  a, s = u(zw.reshape(-1, e)), u(zs.reshape(-1, e))
  img = np.arange(b * h * w) // (h * w)
  want = np.mean([-np.log(np.exp(a[i] @ s[i] / 0.5) / (np.exp(a[i] @ s[i] / 0.5) + np.exp(a[img != img[i]] @ a[i] / 0.5).sum()))
                  for i in range(b * h * w)])
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  with pytest.raises(ValueError, match="at least 2 images"):
    pc.pixel_contrast_loss(jax.random.key(0), jnp.asarray(zw[:1]), jnp.asarray(zs[:1]), jnp.asarray(cls[:1]),
                           jnp.asarray(mask[:1]), 0, cfg)


def test_memory_bank_is_a_fifo_and_its_loss_is_finite():
  bank = pc.memory_bank(6, 2, 3, 4)
  z = jnp.arange(8.0).reshape(4, 2) + 1
  bank = pc.push(bank, jax.random.key(0), z, jnp.zeros((4, 3)), jnp.zeros((4, 4)), 4)
  bank = pc.push(bank, jax.random.key(1), z, jnp.zeros((4, 3)), jnp.zeros((4, 4)), 4)
  assert int(bank.ptr) == 2 and bool(bank.filled_M.all())
  rng = np.random.default_rng(2)
  cfg = pc.ContrastConfig(num_negatives=4, temperature=0.5)
  big = pc.memory_bank(16, 4, 5, 3)
  args = [jnp.asarray(rng.normal(size=s).astype(np.float32)) for s in ((2, 2, 2, 4), (2, 2, 2, 4), (2, 5, 3),
                                                                        (2, 5, 4, 4))]
  loss, big = pc.memory_contrast_loss(jax.random.key(3), big, *args, 0, cfg, push_count=8)
  loss2, big = pc.memory_contrast_loss(jax.random.key(4), big, *args, 1, cfg, push_count=8)
  assert np.isfinite(float(loss)) and np.isfinite(float(loss2)) and int(big.filled_M.sum()) == 16
