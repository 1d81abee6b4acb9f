"""DiTTA's temporal fusion add-on and contrastive projection head (Flax).

The add-on attends from frame t to frame t-1 in a local window: query and key are
2-layer MLPs (dim-dim, ReLU, dim) on the fused decoder features of frames t and
t-1, the value is frame t-1's class logits, and the attention is a plain dot
product (no 1/sqrt(d), as in the reference) over the (2r+1)^2 neighbours of each
pixel. Neighbours outside the image are left out of the softmax.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def local_window_attention(q_NHWD, k_NHWD, v_NHWC, radius: int) -> jax.Array:
  """out[p] = sum_o softmax_o(q[p] . k[p+o]) v[p+o] over offsets |o| <= radius.

  Unrolled over the (2r+1)^2 static offsets: each offset's score is an `N, H, W`
  map, so memory stays O(H W ((2r+1)^2 + D + C)) and XLA fuses shift, product and
  sum (a scan over offsets with dynamic slices was 5x slower on CPU).
  """
  n, h, w, _ = q_NHWD.shape
  r = radius
  pad = lambda x: jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)))
  kp, vp = pad(k_NHWD), pad(v_NHWC)
  valid = pad(jnp.ones((1, h, w, 1), bool))[..., 0]
  offs = [(dy, dx) for dy in range(2 * r + 1) for dx in range(2 * r + 1)]
  scores = jnp.stack([jnp.where(valid[:, dy:dy + h, dx:dx + w],
                                jnp.sum(q_NHWD * kp[:, dy:dy + h, dx:dx + w], -1), -jnp.inf)
                      for dy, dx in offs], -1)
  attn = jax.nn.softmax(scores, -1)  # the centre offset is always valid: no all -inf row
  return sum(attn[..., i, None] * vp[:, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offs))


class MLP2(nn.Module):
  dim: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.dim, name="fc2")(nn.relu(nn.Dense(self.dim, name="fc1")(x)))


class TemporalAddon(nn.Module):
  """Add-on logits of frame t from features of t and t-1 and logits of t-1."""
  dim: int = 256
  radius: int = 5

  @nn.compact
  def __call__(self, feat_t_NHWD, feat_prev_NHWD, logits_prev_NHWC):
    q = MLP2(self.dim, name="query")(feat_t_NHWD)
    k = MLP2(self.dim, name="key")(feat_prev_NHWD)
    return local_window_attention(q, k, logits_prev_NHWC, self.radius)


class ProjectionHead(nn.Module):
  """Three 1x1 layers (ReLU between) from decoder features to contrastive features."""
  dim: int = 256

  @nn.compact
  def __call__(self, feat_NHWD):
    x = nn.relu(nn.Dense(self.dim, name="fc1")(feat_NHWD))
    x = nn.relu(nn.Dense(self.dim, name="fc2")(x))
    return nn.Dense(self.dim, name="fc3")(x)
