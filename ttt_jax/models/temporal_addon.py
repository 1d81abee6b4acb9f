"""DiTTA's temporal fusion add-on and contrastive projection head (Flax).

The add-on attends from frame t to frame t-1 in a local window: query and key are
2-layer MLPs (dim-dim, ReLU, dim) on the fused decoder features of frames t and
t-1, the value is frame t-1's class logits, and the attention is a plain dot
product (no 1/sqrt(d), as in the reference) over the (2r+1)^2 neighbours of each
pixel. Neighbours outside the image are left out of the softmax. Both modules start
from PyTorch's default initialisation, as the reference's (randomly initialised) ones.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from ttt_jax.models.reciprocal import softmax


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
  attn = softmax(scores, -1)  # the centre offset is always valid: no all -inf row
  return sum(attn[..., i, None] * vp[:, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offs))


def torch_dense(features: int, fan_in: int, name: str) -> nn.Dense:
  """A Dense layer initialised as PyTorch's nn.Linear / 1x1 nn.Conv2d default:
  weight and bias both U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5)).
  The reference's add-on and projection head start from this init, untrained."""
  bound = 1.0 / math.sqrt(fan_in)
  return nn.Dense(features, name=name,
                  kernel_init=nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
                  bias_init=lambda key, shape, dtype=jnp.float32: jax.random.uniform(
                      key, shape, dtype, -bound, bound))


class MLP2(nn.Module):
  dim: int

  @nn.compact
  def __call__(self, x):
    h = nn.relu(torch_dense(self.dim, x.shape[-1], "fc1")(x))
    return torch_dense(self.dim, self.dim, "fc2")(h)


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
    x = nn.relu(torch_dense(self.dim, feat_NHWD.shape[-1], "fc1")(feat_NHWD))
    x = nn.relu(torch_dense(self.dim, self.dim, "fc2")(x))
    return torch_dense(self.dim, self.dim, "fc3")(x)
