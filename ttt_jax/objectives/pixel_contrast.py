"""CAST's instance-aware pixel contrast.

Each pixel of the embedding map (`B, h, w, E` from the projection head, L2-
normalised here) of the weak view is an anchor; its positive is the same pixel of
the strong view (the views stay pixel-aligned); its K negatives are pixels of the
*other* images of the batch (or of a memory bank), drawn without replacement with
probability proportional to how dissimilar their pseudo-probabilities are to the
anchor's (Gumbel top-k: the top K of log w + Gumbel noise). NT-Xent:

    L = -log( e^{s+/T} / (e^{s+/T} + sum_k e^{s_k/T}) ),   s = cosine similarity.

Pseudo-probabilities per pixel, from the model's own detached predictions (mask
logits resized to the embedding grid):
- 'paper': the mask distribution (softmax over queries) and the expected class
  distribution (sum_q mask_q * softmax(class_q), renormalised), each L2-normalised
  and compared separately;
- 'snapshot': the expected class distribution only, unnormalised, weight
  clamp(1 - p_a . p_n, 0) + 1e-6 (the development snapshot).

Samplers (the paper's ablation): 'fusion' (1 - mean of the mask and class
cosines), 'mask', 'class', 'uniform'. Options of the snapshot: a hinge on the
negatives (max(s_k/T - 0.5, 0)), no gradient through the strong view, a
temperature decaying linearly, a FIFO memory bank of negatives (half the hardest,
half sampled).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

SAMPLERS = ("fusion", "mask", "class", "uniform")
PSEUDO = ("paper", "snapshot")


@dataclasses.dataclass(frozen=True)
class ContrastConfig:
  num_negatives: int = 256
  temperature: float = 0.2           # start value when decaying
  final_temperature: float | None = None   # linear decay to this over decay_steps
  decay_steps: int = 90000
  sampler: str = "fusion"
  pseudo: str = "paper"
  hinge: float | None = None         # snapshot: 0.5
  strong_grad: bool = True           # snapshot: False (strong view under no_grad)
  max_anchors: int | None = None     # a uniform subset of anchors per batch, to bound memory

  def __post_init__(self):
    if self.sampler not in SAMPLERS:
      raise ValueError(f"pixel contrast sampler {self.sampler!r}; expected one of {SAMPLERS}")
    if self.pseudo not in PSEUDO:
      raise ValueError(f"pixel contrast pseudo {self.pseudo!r}; expected one of {PSEUDO}")


def temperature(step, cfg: ContrastConfig):
  """Fixed, or linear from `temperature` to `final_temperature` over `decay_steps`."""
  if cfg.final_temperature is None:
    return jnp.float32(cfg.temperature)
  t = cfg.temperature + (cfg.final_temperature - cfg.temperature) * step / cfg.decay_steps
  return jnp.maximum(t, cfg.final_temperature).astype(jnp.float32)


def _unit(x, eps=1e-12):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def pseudo_probabilities(class_BQK, mask_BQhw, hw):
  """Per pixel of the `hw` grid: `(mask_BNQ, class_BNK)`, the softmax over queries of
  the resized mask logits and the expected class distribution (renormalised)."""
  b, q = mask_BQhw.shape[:2]
  m = jax.image.resize(mask_BQhw, (b, q, *hw), "bilinear", antialias=False)
  m = jax.nn.softmax(m.reshape(b, q, -1), axis=1).transpose(0, 2, 1)
  cls = jnp.einsum("bnq,bqk->bnk", m, jax.nn.softmax(class_BQK, -1))
  cls = cls / (cls.sum(-1, keepdims=True) + 1e-6)
  return jax.lax.stop_gradient(m), jax.lax.stop_gradient(cls)


def dissimilarity(anchor, cand, cfg: ContrastConfig):
  """`(A, M)` sampling weights (> 0) of candidates for anchors; `anchor`/`cand` are
  `(mask, class)` pseudo-probability pairs `(A, Q), (A, K)` and `(M, Q), (M, K)`."""
  (am, ac), (cm, cc) = anchor, cand
  if cfg.sampler == "uniform":
    return jnp.ones((am.shape[0], cm.shape[0]), am.dtype)
  if cfg.pseudo == "snapshot":
    return jnp.maximum(1.0 - ac @ cc.T, 0.0) + 1e-6
  cos_m = _unit(am) @ _unit(cm).T
  cos_c = _unit(ac) @ _unit(cc).T
  sim = {"fusion": 0.5 * (cos_m + cos_c), "mask": cos_m, "class": cos_c}[cfg.sampler]
  return jnp.maximum(1.0 - sim, 0.0) + 1e-6


def gumbel_top_k(key, weights_AM, allowed_AM, k: int):
  """`(A, k)` candidate indices per anchor, without replacement, with probability
  proportional to `weights` among `allowed` ones (Gumbel top-k)."""
  scores = jnp.where(allowed_AM, jnp.log(weights_AM) + jax.random.gumbel(key, weights_AM.shape), -jnp.inf)
  return jax.lax.top_k(scores, k)[1]


def nt_xent(pos_A, neg_AK, t, hinge: float | None = None):
  """Mean over anchors of -log softmax of the positive among [positive, negatives];
  `pos`/`neg` are cosine similarities, `t` the temperature."""
  neg = neg_AK / t
  if hinge is not None:
    neg = jnp.maximum(neg - hinge, 0.0)
  logits = jnp.concatenate([pos_A[:, None] / t, neg], axis=1)
  return jnp.mean(-jax.nn.log_softmax(logits, axis=1)[:, 0])


def _pixels(key, z_weak_BhwE, z_strong_BhwE, class_BQK, mask_BQhw, cfg):
  """Both losses' inputs per pixel (B * h * w rows): unit embeddings of the weak and
  strong views, the pseudo-probabilities `(mask, class)`, and the anchors' indices
  (all pixels, or `max_anchors` drawn with `key`)."""
  b, h, w, e = z_weak_BhwE.shape
  n = b * h * w
  zw = _unit(z_weak_BhwE.reshape(n, e))
  zs = _unit(z_strong_BhwE.reshape(n, e))
  if not cfg.strong_grad:
    zs = jax.lax.stop_gradient(zs)
  pm, pc = pseudo_probabilities(class_BQK, mask_BQhw, (h, w))
  if cfg.max_anchors is None or cfg.max_anchors >= n:
    idx = jnp.arange(n)
  else:
    idx = jax.random.choice(key, n, (cfg.max_anchors,), replace=False)
  return zw, zs, (pm.reshape(n, -1), pc.reshape(n, -1)), idx


def pixel_contrast_loss(key, z_weak_BhwE, z_strong_BhwE, class_BQK, mask_BQhw, step, cfg: ContrastConfig):
  """The in-batch pixel contrast. Returns `(loss, info)`; info holds the temperature
  and the sampled negatives' (image, pixel) of the first anchor, for inspection."""
  b, h, w, _ = z_weak_BhwE.shape
  if b < 2:
    raise ValueError("pixel contrast draws negatives from other images: the batch needs at least 2 images")
  n = h * w
  if cfg.num_negatives > (b - 1) * n:
    raise ValueError(f"num_negatives {cfg.num_negatives} > the {(b - 1) * n} pixels of the other images")
  k_anchor, k_neg = jax.random.split(key)
  zw, zs, (pm, pc), idx = _pixels(k_anchor, z_weak_BhwE, z_strong_BhwE, class_BQK, mask_BQhw, cfg)
  img = jnp.arange(b * n) // n
  allowed = img[idx][:, None] != img[None, :]
  wts = dissimilarity((pm[idx], pc[idx]), (pm, pc), cfg)
  neg_idx = gumbel_top_k(k_neg, wts, allowed, cfg.num_negatives)
  t = temperature(step, cfg)
  pos = jnp.sum(zw[idx] * zs[idx], -1)
  neg = jnp.einsum("ae,ake->ak", zw[idx], zw[neg_idx])
  loss = nt_xent(pos, neg, t, cfg.hinge)
  return loss, {"temperature": t, "anchor": idx[0], "negatives": neg_idx[0]}


@struct.dataclass
class MemoryBank:
  """A FIFO of detached embeddings with their pseudo-probabilities."""
  z_ME: jax.Array
  mask_MQ: jax.Array
  class_MK: jax.Array
  filled_M: jax.Array
  ptr: jax.Array


def memory_bank(size: int, embed_dim: int, num_queries: int, num_classes_1: int) -> MemoryBank:
  return MemoryBank(jnp.zeros((size, embed_dim)), jnp.zeros((size, num_queries)), jnp.zeros((size, num_classes_1)),
                    jnp.zeros((size,), bool), jnp.zeros((), jnp.int32))


def push(bank: MemoryBank, key, z_NE, mask_NQ, class_NK, count: int) -> MemoryBank:
  """Enqueues `count` random rows of the batch, overwriting the oldest."""
  sel = jax.random.choice(key, z_NE.shape[0], (count,), replace=False)
  size = bank.z_ME.shape[0]
  pos = (bank.ptr + jnp.arange(count)) % size
  sg = jax.lax.stop_gradient
  return MemoryBank(bank.z_ME.at[pos].set(sg(_unit(z_NE[sel]))), bank.mask_MQ.at[pos].set(mask_NQ[sel]),
                    bank.class_MK.at[pos].set(class_NK[sel]), bank.filled_M.at[pos].set(True),
                    (bank.ptr + count) % size)


def memory_contrast_loss(key, bank: MemoryBank, z_weak_BhwE, z_strong_BhwE, class_BQK, mask_BQhw, step,
                         cfg: ContrastConfig, push_count: int):
  """Pixel contrast against the bank: per anchor, half the negatives are the bank's
  most similar entries, half are drawn by dissimilarity. Returns `(loss, new_bank)`;
  the batch's weak embeddings are pushed after the loss is taken."""
  b, h, w, _ = z_weak_BhwE.shape
  if bank.z_ME.shape[0] < cfg.num_negatives:
    raise ValueError(f"memory bank of {bank.z_ME.shape[0]} < num_negatives {cfg.num_negatives}")
  k_anchor, k_neg, k_push = jax.random.split(key, 3)
  zw, zs, (pm, pc), idx = _pixels(k_anchor, z_weak_BhwE, z_strong_BhwE, class_BQK, mask_BQhw, cfg)
  a = zw[idx]
  sim = a @ bank.z_ME.T
  allowed = jnp.broadcast_to(bank.filled_M[None], sim.shape)
  k_hard = cfg.num_negatives // 2
  hard = jax.lax.top_k(jnp.where(allowed, jax.lax.stop_gradient(sim), -jnp.inf), k_hard)[1]
  taken = jnp.zeros(sim.shape, bool).at[jnp.arange(sim.shape[0])[:, None], hard].set(True)
  wts = dissimilarity((pm[idx], pc[idx]), (bank.mask_MQ, bank.class_MK), cfg)
  drawn = gumbel_top_k(k_neg, wts, allowed & ~taken, cfg.num_negatives - k_hard)
  neg_idx = jnp.concatenate([hard, drawn], axis=1)
  neg = jnp.take_along_axis(sim, neg_idx, axis=1)
  # Entries not yet filled cannot be drawn while filled ones remain; before the bank
  # holds num_negatives entries the empty slots (all-zero embeddings, similarity 0) count.
  loss = nt_xent(jnp.sum(a * zs[idx], -1), neg, temperature(step, cfg), cfg.hinge)
  return loss, push(bank, k_push, z_weak_BhwE.reshape(b * h * w, -1), pm, pc, push_count)
