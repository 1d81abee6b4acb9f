"""Instances from a Mask2Former-style prediction (its instance inference) and
pseudo-labels from them.

Per image: class scores softmax(class)[:, :-1] (`Q, C`); the top `topk` of the
`Q * C` (query, class) pairs; each pair's mask is its query's mask logits > 0, and
its score is the class score times the mean sigmoid inside that mask.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def mask_scores(mask_Qhw):
  """`(binary_Qhw, score_Q)`: each mask (logits > 0) and the mean sigmoid inside it."""
  binary = mask_Qhw > 0
  return binary, jnp.sum(jax.nn.sigmoid(mask_Qhw) * binary, (1, 2)) / (jnp.sum(binary, (1, 2)) + 1e-6)


def instance_predictions(class_QK, mask_Qhw, topk: int):
  """`(labels_T, scores_T, query_T)` of the top `topk` (query, class) pairs of one image;
  masks are `mask_Qhw[query_T] > 0`."""
  q, k = class_QK.shape
  cls = jax.nn.softmax(class_QK, -1)[:, :-1]
  c = k - 1
  top, idx = jax.lax.top_k(cls.reshape(-1), topk)
  query, labels = idx // c, idx % c
  _, mask_score = mask_scores(mask_Qhw[query])
  return labels.astype(jnp.int32), top * mask_score, query


def pseudo_labels(class_QK, mask_Qhw, threshold: float, max_targets: int):
  """Targets from a teacher's prediction: each query's best class, scored as above;
  the queries scoring above `threshold` with a non-empty mask, best first, at most
  `max_targets`, padded (`labels_G` -1, empty masks). Returns `(labels_G, masks_Ghw
  bool, scores_G)`; masks at the mask logits' resolution."""
  cls = jax.nn.softmax(class_QK, -1)[:, :-1]
  binary, mask_score = mask_scores(mask_Qhw)
  score = cls.max(-1) * mask_score * (jnp.sum(binary, (1, 2)) > 0)
  g = min(max_targets, class_QK.shape[0])
  top, query = jax.lax.top_k(score, g)
  keep = top > threshold
  masks = binary[query] & keep[:, None, None]
  labels = jnp.where(keep, cls.argmax(-1)[query], -1).astype(jnp.int32)
  if g < max_targets:   # fewer queries than target slots: pad
    pad = max_targets - g
    labels = jnp.concatenate([labels, jnp.full((pad,), -1, jnp.int32)])
    masks = jnp.concatenate([masks, jnp.zeros((pad, *masks.shape[1:]), bool)])
    top = jnp.concatenate([top, jnp.zeros((pad,))])
  return labels, masks, jnp.where(labels >= 0, top, 0.0)
