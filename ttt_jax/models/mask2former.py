"""Mask2Former's transformer decoder (Cheng et al. 2022) in Flax.

Learned queries (content features + positional embeddings) pass through
`num_layers` layers, each masked cross-attention to one level of the pixel
decoder's multi-scale maps (round robin, coarse first; the memory carries a 2-D
sine position encoding and a level embedding), then self-attention, then an FFN,
all post-norm. Before the first layer and after every layer a shared head predicts
class logits (`num_classes + 1`, the last = no object) and mask logits (an MLP's
query embedding dotted with the mask features); the mask, resized to the next
level and thresholded at 0.5, is the next layer's attention mask (a query that
would attend to nothing attends everywhere).

Returns `class_LBQK` (K = num_classes + 1) and `mask_LBQhw` at the mask features'
resolution, L = num_layers + 1 predictions (the last is the output; the others
feed the auxiliary losses).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecoderConfig:
  num_queries: int = 100
  hidden: int = 384
  heads: int = 8
  ffn: int = 2048
  num_layers: int = 9
  dropout: float = 0.0
  num_levels: int = 3


def sine_position_encoding(h: int, w: int, dim: int, temperature: float = 10000.0):
  """DETR's normalised 2-D sine encoding: `(h * w, dim)`, y half then x half."""
  npf = dim // 2
  y = (jnp.arange(1, h + 1, dtype=jnp.float32) / (h + 1e-6)) * 2 * jnp.pi
  x = (jnp.arange(1, w + 1, dtype=jnp.float32) / (w + 1e-6)) * 2 * jnp.pi
  dim_t = temperature ** (2 * (jnp.arange(npf) // 2) / npf)

  def enc(v):   # (n,) -> (n, npf), sin on even and cos on odd channels, interleaved
    a = v[:, None] / dim_t[None]
    return jnp.stack([jnp.sin(a[:, 0::2]), jnp.cos(a[:, 1::2])], axis=2).reshape(v.shape[0], npf)

  py, px = enc(y), enc(x)
  return jnp.concatenate([jnp.broadcast_to(py[:, None], (h, w, npf)), jnp.broadcast_to(px[None], (h, w, npf))],
                         axis=-1).reshape(h * w, 2 * npf)


class DecoderLayer(nn.Module):
  cfg: DecoderConfig

  @nn.compact
  def __call__(self, tgt, query_pos, memory, memory_pos, attn_mask, train: bool):
    c = self.cfg
    drop = nn.Dropout(c.dropout, deterministic=not train)
    mha = lambda name: nn.MultiHeadDotProductAttention(c.heads, qkv_features=c.hidden, out_features=c.hidden,
                                                      name=name)
    # attn_mask: True where a query may attend (flax's convention), one per head.
    x = mha("cross_attn")(tgt + query_pos, memory + memory_pos, memory, mask=attn_mask[:, None])
    tgt = nn.LayerNorm(name="norm_cross")(tgt + drop(x))
    q = tgt + query_pos
    tgt = nn.LayerNorm(name="norm_self")(tgt + drop(mha("self_attn")(q, q, tgt)))
    x = nn.Dense(c.ffn, name="ffn1")(tgt)
    x = nn.Dense(c.hidden, name="ffn2")(drop(nn.relu(x)))
    return nn.LayerNorm(name="norm_ffn")(tgt + drop(x))


class PredictionHead(nn.Module):
  hidden: int
  num_classes: int

  @nn.compact
  def __call__(self, tgt_BQC, mask_features_BHWM):
    x = nn.LayerNorm(name="decoder_norm")(tgt_BQC)
    cls = nn.Dense(self.num_classes + 1, name="class_embed")(x)
    m = x
    for i in range(3):
      m = nn.Dense(self.hidden if i < 2 else mask_features_BHWM.shape[-1], name=f"mask_embed_{i}")(m)
      m = nn.relu(m) if i < 2 else m
    return cls, jnp.einsum("bqc,bhwc->bqhw", m, mask_features_BHWM)


def next_attention_mask(mask_BQhw, size):
  """True where attention is allowed: the resized mask's sigmoid >= 0.5; a query whose
  mask is empty at that level may attend everywhere (as Mask2Former does)."""
  b, q = mask_BQhw.shape[:2]
  m = jax.image.resize(jax.lax.stop_gradient(mask_BQhw), (b, q, *size), "bilinear", antialias=False)
  allow = (jax.nn.sigmoid(m) >= 0.5).reshape(b, q, -1)
  return allow | ~allow.any(-1, keepdims=True)


class MaskDecoder(nn.Module):
  cfg: DecoderConfig
  num_classes: int

  @nn.compact
  def __call__(self, mask_features_BHWM, multi_scale, train: bool = False):
    c = self.cfg
    if len(multi_scale) != c.num_levels:
      raise ValueError(f"the mask decoder reads {c.num_levels} levels, got {len(multi_scale)}")
    b = mask_features_BHWM.shape[0]
    level_embed = self.param("level_embed", nn.initializers.normal(1.0), (c.num_levels, c.hidden))
    mem, pos, sizes = [], [], []
    for i, x in enumerate(multi_scale):
      h, w = x.shape[1:3]
      if x.shape[-1] != c.hidden:
        x = nn.Conv(c.hidden, (1, 1), name=f"input_proj_{i}")(x)
      mem.append(x.reshape(b, h * w, c.hidden) + level_embed[i][None, None])
      pos.append(sine_position_encoding(h, w, c.hidden)[None])
      sizes.append((h, w))
    query_feat = self.param("query_feat", nn.initializers.normal(1.0), (c.num_queries, c.hidden))
    query_pos = jnp.broadcast_to(self.param("query_embed", nn.initializers.normal(1.0), (c.num_queries, c.hidden)),
                                 (b, c.num_queries, c.hidden))
    tgt = jnp.broadcast_to(query_feat, (b, c.num_queries, c.hidden))
    head = PredictionHead(c.hidden, self.num_classes, name="head")
    cls, mask = head(tgt, mask_features_BHWM)
    classes, masks = [cls], [mask]
    for i in range(c.num_layers):
      lvl = i % c.num_levels
      allow = next_attention_mask(mask, sizes[lvl])
      tgt = DecoderLayer(c, name=f"layer_{i}")(tgt, query_pos, mem[lvl], pos[lvl], allow, train)
      cls, mask = head(tgt, mask_features_BHWM)
      classes.append(cls)
      masks.append(mask)
    return jnp.stack(classes), jnp.stack(masks)
