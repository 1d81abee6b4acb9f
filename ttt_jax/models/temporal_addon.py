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


_NEG = -1e30  # finite "minus infinity": exp(m - m_new) stays defined for all-masked prefixes


def local_window_attention(q_NHWD, k_NHWD, v_NHWC, radius: int) -> jax.Array:
  """out[p] = sum_o softmax_o(q[p] . k[p+o]) v[p+o] over offsets |o| <= radius.

  Memory stays O(H W (D + C)): a scan over the (2r+1)^2 offsets with a running
  (online) softmax, rematerialised in the backward pass.
  """
  n, h, w, _ = q_NHWD.shape
  r = radius
  pad = lambda x, v=0.0: jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), constant_values=v)
  kp, vp = pad(k_NHWD), pad(v_NHWC)
  valid = pad(jnp.ones((1, h, w, 1), q_NHWD.dtype))
  side = 2 * r + 1
  offsets = jnp.stack(jnp.meshgrid(jnp.arange(side), jnp.arange(side), indexing="ij"), -1).reshape(-1, 2)

  @jax.checkpoint
  def body(carry, off):
    m, l, acc = carry
    sl = lambda x: jax.lax.dynamic_slice(x, (0, off[0], off[1], 0), (x.shape[0], h, w, x.shape[3]))
    ok = sl(valid)[..., 0] > 0
    s = jnp.where(ok, jnp.sum(q_NHWD * sl(kp), -1), _NEG)
    m_new = jnp.maximum(m, s)
    scale = jnp.exp(m - m_new)
    p = jnp.where(ok, jnp.exp(s - m_new), 0.0)
    return (m_new, l * scale + p, acc * scale[..., None] + p[..., None] * sl(vp)), None

  init = (jnp.full((n, h, w), _NEG, q_NHWD.dtype), jnp.zeros((n, h, w), q_NHWD.dtype),
          jnp.zeros(v_NHWC.shape, v_NHWC.dtype))
  (_, l, acc), _ = jax.lax.scan(body, init, offsets)
  return acc / l[..., None]


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
