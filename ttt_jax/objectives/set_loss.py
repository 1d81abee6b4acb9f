"""Mask2Former's set-prediction loss: Hungarian matching, class cross-entropy with a
down-weighted no-object class, mask BCE and dice on sampled points.

Per prediction (the output and every auxiliary one) and per image:
- matching cost on `match_points` points shared by all pairs, uniform in the image:
  `w_class * -p(target class) + w_mask * BCE + w_dice * dice`, assigned exactly
  (`objectives.hungarian`);
- class loss: softmax cross-entropy of every query against its matched class or
  no object, weighted per target class (no object `no_object_weight`), averaged by
  the weights' sum over the batch (torch's `cross_entropy(weight=...)`);
- mask losses on matched pairs at `num_points` points chosen by importance (of
  `oversample` x as many uniform points, the `importance` fraction with the most
  uncertain predicted logits, the rest uniform), normalised by the batch's number
  of target masks.

Targets are padded to a fixed count G: `labels_BG` (-1 = padding) and
`masks_BGHW` (any resolution: points are read in normalised coordinates).
Weights and counts are the reference configs' (class 2, mask 5, dice 5, no object
0.1, 12,544 points, oversample 3, importance 0.75).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from ttt_jax.objectives.hungarian import hungarian_match


@dataclasses.dataclass(frozen=True)
class SetLossConfig:
  class_weight: float = 2.0
  mask_weight: float = 5.0
  dice_weight: float = 5.0
  no_object_weight: float = 0.1
  num_points: int = 12544
  oversample: float = 3.0
  importance: float = 0.75
  match_points: int = 12544


def point_sample(maps_NHW: jax.Array, xy_NP2: jax.Array) -> jax.Array:
  """Bilinear values of each map at points `xy` in [0, 1] (x, y), pixel centres at
  (i + 0.5) / size, zero outside (torch's `grid_sample`, align_corners False).
  Returns `(N, P)`."""
  n, h, w = maps_NHW.shape
  x = xy_NP2[..., 0] * w - 0.5
  y = xy_NP2[..., 1] * h - 0.5
  x0, y0 = jnp.floor(x), jnp.floor(y)
  out = 0.0
  for dx in (0, 1):
    for dy in (0, 1):
      xi, yi = x0 + dx, y0 + dy
      wgt = (1 - jnp.abs(x - xi)) * (1 - jnp.abs(y - yi))
      inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
      xc = jnp.clip(xi, 0, w - 1).astype(jnp.int32)
      yc = jnp.clip(yi, 0, h - 1).astype(jnp.int32)
      v = jnp.take_along_axis(maps_NHW.reshape(n, h * w), yc * w + xc, axis=1)
      out = out + jnp.where(inside, wgt * v, 0.0)
  return out


def dice_loss(logits_NP, targets_NP):
  """`(N,)` 1 - (2 |p t| + 1) / (|p| + |t| + 1) with p = sigmoid(logits)."""
  p = jax.nn.sigmoid(logits_NP)
  return 1.0 - (2 * jnp.sum(p * targets_NP, -1) + 1.0) / (p.sum(-1) + targets_NP.sum(-1) + 1.0)


def match_cost(class_QK, mask_Qhw, labels_G, masks_GHW, xy_P2, cfg: SetLossConfig):
  """`(Q, G)` matching cost of one image's predictions against its targets."""
  prob = jax.nn.softmax(class_QK, -1)
  cost_class = -prob[:, jnp.maximum(labels_G, 0)]
  pm = point_sample(mask_Qhw, jnp.broadcast_to(xy_P2, (mask_Qhw.shape[0], *xy_P2.shape)))
  tm = point_sample(masks_GHW.astype(jnp.float32), jnp.broadcast_to(xy_P2, (masks_GHW.shape[0], *xy_P2.shape)))
  p = xy_P2.shape[0]
  pos, neg = optax.sigmoid_binary_cross_entropy(pm, 1.0), optax.sigmoid_binary_cross_entropy(pm, 0.0)
  cost_mask = (pos @ tm.T + neg @ (1 - tm).T) / p
  s = jax.nn.sigmoid(pm)
  cost_dice = 1.0 - (2 * s @ tm.T + 1.0) / (s.sum(-1)[:, None] + tm.sum(-1)[None] + 1.0)
  return cfg.class_weight * cost_class + cfg.mask_weight * cost_mask + cfg.dice_weight * cost_dice


def importance_points(key, logits_GHW, cfg: SetLossConfig):
  """`(G, P, 2)` points: the most uncertain of oversampled uniform ones plus uniform ones."""
  g = logits_GHW.shape[0]
  n_over = int(cfg.num_points * cfg.oversample)
  n_imp = int(cfg.importance * cfg.num_points)
  k1, k2 = jax.random.split(key)
  cand = jax.random.uniform(k1, (g, n_over, 2))
  unc = -jnp.abs(point_sample(jax.lax.stop_gradient(logits_GHW), cand))
  idx = jax.lax.top_k(unc, n_imp)[1]
  chosen = jnp.take_along_axis(cand, idx[..., None], axis=1)
  rand = jax.random.uniform(k2, (g, cfg.num_points - n_imp, 2))
  return jnp.concatenate([chosen, rand], axis=1)


def _one_prediction(key, class_BQK, mask_BQhw, labels_BG, masks_BGHW, cfg: SetLossConfig):
  b, q, k = class_BQK.shape
  valid_BG = labels_BG >= 0
  k_match, k_pts = jax.random.split(key)
  xy_BP2 = jax.random.uniform(k_match, (b, cfg.match_points, 2))
  cost = jax.vmap(lambda *a: match_cost(*a, cfg))(class_BQK, mask_BQhw, labels_BG, masks_BGHW, xy_BP2)
  query_BG = jax.vmap(hungarian_match)(jax.lax.stop_gradient(cost), valid_BG)
  # Class loss: matched queries take their target's class, the others no object (k - 1).
  no_obj = k - 1
  tgt_BQ = jnp.full((b, q), no_obj, jnp.int32)
  rows = jnp.broadcast_to(jnp.arange(b)[:, None], query_BG.shape)
  tgt_BQ = tgt_BQ.at[rows, jnp.where(valid_BG, query_BG, q)].set(labels_BG, mode="drop")
  w_BQ = jnp.where(tgt_BQ == no_obj, cfg.no_object_weight, 1.0)
  ce = optax.softmax_cross_entropy_with_integer_labels(class_BQK, tgt_BQ)
  loss_class = jnp.sum(w_BQ * ce) / jnp.sum(w_BQ)
  # Mask losses on the matched pairs.
  src_BGhw = jnp.take_along_axis(mask_BQhw, query_BG[:, :, None, None], axis=1)
  g = labels_BG.shape[1]
  src = src_BGhw.reshape(b * g, *src_BGhw.shape[2:])
  tgt = masks_BGHW.reshape(b * g, *masks_BGHW.shape[2:]).astype(jnp.float32)
  xy = importance_points(k_pts, src, cfg)
  pl, tl = point_sample(src, xy), point_sample(tgt, xy)
  valid = valid_BG.reshape(-1)
  num_masks = jnp.maximum(valid.sum(), 1)
  loss_mask = jnp.sum(jnp.where(valid, optax.sigmoid_binary_cross_entropy(pl, tl).mean(-1), 0.0)) / num_masks
  loss_dice = jnp.sum(jnp.where(valid, dice_loss(pl, tl), 0.0)) / num_masks
  return {"class": loss_class, "mask": loss_mask, "dice": loss_dice}, query_BG


def set_loss(key, class_LBQK, mask_LBQhw, labels_BG, masks_BGHW, cfg: SetLossConfig = SetLossConfig()):
  """Weighted sum over all L predictions (each matched on its own) and its terms.

  Returns `(loss, terms)`: terms holds 'class', 'mask', 'dice' summed over
  predictions (unweighted) and `matches_BG`, the last prediction's query per target.
  """
  keys = jax.random.split(key, class_LBQK.shape[0])
  terms, matches = jax.vmap(lambda k, c, m: _one_prediction(k, c, m, labels_BG, masks_BGHW, cfg))(
      keys, class_LBQK, mask_LBQhw)
  terms = {n: v.sum() for n, v in terms.items()}
  loss = cfg.class_weight * terms["class"] + cfg.mask_weight * terms["mask"] + cfg.dice_weight * terms["dice"]
  return loss, {**terms, "matches_BG": matches[-1]}
