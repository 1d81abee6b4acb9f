"""DiTTA's losses and fusion (pure jnp; reference behaviour per METHODS.md).

Shapes: logits/probabilities `N, H, W, C`; features `N, H, W, D`; label and
object maps `N, H, W` (int, `IGNORE` = no target).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ttt_jax.models.reciprocal import l2_normalise, safe_ratio, softmax

IGNORE = 255


def reliability(probs_NHWC: jax.Array) -> jax.Array:
  """R = 1 - E / max(E), E the per-pixel entropy, the max taken over each image."""
  p = jnp.clip(probs_NHWC, 1e-12, 1.0)
  e = -jnp.sum(p * jnp.log(p), -1)
  m = jnp.max(e, axis=(1, 2), keepdims=True)
  return jnp.where(m > 0, 1.0 - e * (1.0 / jnp.where(m > 0, m, 1.0)), 1.0)


def fuse(p_plain: jax.Array, p_addon: jax.Array, tau: float = 0.8) -> jax.Array:
  """Pixels with R_plain < tau get w p_plain + (1 - w) p_addon, w = R_plain / (R_plain + R_addon)."""
  r_p, r_a = reliability(p_plain), reliability(p_addon)
  w = safe_ratio(r_p, r_p + r_a)[..., None]
  mixed = w * p_plain + (1.0 - w) * p_addon
  return jnp.where((r_p < tau)[..., None], mixed, p_plain)


def distill_loss(logits_NHWC, target_NHW, *, double_softmax: bool = True) -> jax.Array:
  """Cross-entropy to the target classes, averaged over all pixels with ignored ones
  counted as zero (the reference's reduction).

  `double_softmax=True` is the reference code: its cross-entropy is applied to
  softmax probabilities, i.e. log_softmax(softmax(logits)); False is plain CE.
  """
  z = softmax(logits_NHWC, -1) if double_softmax else logits_NHWC
  logp = jax.nn.log_softmax(z, -1)
  valid = target_NHW != IGNORE
  t = jnp.where(valid, target_NHW, 0).astype(jnp.int32)
  nll = -jnp.take_along_axis(logp, t[..., None], -1)[..., 0]
  return jnp.sum(jnp.where(valid, nll, 0.0)) / nll.size


def l2n(x, axis=-1):
  """Unit L2 norm along `axis` (see `reciprocal` for why not a plain divide)."""
  return l2_normalise(x, axis)


def minmax(x_NHW):
  lo = jnp.min(x_NHW, axis=(1, 2), keepdims=True)
  hi = jnp.max(x_NHW, axis=(1, 2), keepdims=True)
  return safe_ratio(x_NHW - lo, hi - lo)


def update_prototypes(feat_NHWD, rel_NHW, obj_NHW, protos_KD, seen_K):
  """Running object prototypes: p = normalise(mean_o(feat x minmax(R))), then
  normalise((p + old) / 2) for objects seen before. Returns `(protos, seen)`."""
  k = protos_KD.shape[0]
  onehot = jax.nn.one_hot(jnp.where(obj_NHW == IGNORE, -1, obj_NHW), k, dtype=feat_NHWD.dtype)
  w = minmax(rel_NHW)[..., None] * feat_NHWD
  s = jnp.einsum("nhwk,nhwd->kd", onehot, w)
  cnt = jnp.sum(onehot, axis=(0, 1, 2))
  present = cnt > 0
  new = l2n(s * (1.0 / jnp.maximum(cnt, 1.0))[:, None])
  mixed = jnp.where(seen_K[:, None], l2n((new + protos_KD) / 2.0), new)
  return jnp.where(present[:, None], mixed, protos_KD), seen_K | present


def prototype_reliability(probs_NHWC, *, double_softmax: bool = True) -> jax.Array:
  """Reliability that weights a prototype's pixels (before `update_prototypes`' min-max).

  The reference (ditta/tta.py `_contrastive`) takes the entropy of softmax(momentum
  probabilities), a second softmax over values already in [0, 1]; `double_softmax=False`
  takes the entropy of the probabilities themselves. Min-max normalised afterwards, both
  give 1 - (E - min E) / (max E - min E).
  """
  return reliability(softmax(probs_NHWC, -1) if double_softmax else probs_NHWC)


def contrast_loss(feat_NHWD, obj_NHW, protos_KD, temperature: float = 1.0) -> jax.Array:
  """CE of cosine(feature, prototypes) / T against each pixel's object.

  As the reference (ditta/tta.py `_contrastive`): the classes of each image's logits
  are the prototypes of the objects present in that image only (objects seen on
  earlier frames are no negatives), and the loss is averaged over all pixels, those
  of no object counting as zero (mmseg's reduction).
  """
  k = protos_KD.shape[0]
  onehot = jax.nn.one_hot(jnp.where(obj_NHW == IGNORE, -1, obj_NHW), k, dtype=jnp.float32)
  present_NK = jnp.any(onehot > 0, axis=(1, 2))
  logits = jnp.einsum("nhwd,kd->nhwk", l2n(feat_NHWD), protos_KD) / temperature
  logits = jnp.where(present_NK[:, None, None, :], logits, -1e9)
  valid = obj_NHW != IGNORE
  t = jnp.where(valid, obj_NHW, 0).astype(jnp.int32)
  nll = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), t[..., None], -1)[..., 0]
  return jnp.sum(jnp.where(valid, nll, 0.0)) / nll.size
