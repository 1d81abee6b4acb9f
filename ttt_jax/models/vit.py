"""A ViT with DINOv2's architecture (Hugging Face `Dinov2Model` layout) in Flax.

Patch embedding (a 14 x 14 stride-14 projection), a CLS token, learned position
embeddings resized to the input's patch grid by torch's bicubic rule (A = -0.75,
align_corners False, as `Dinov2Embeddings.interpolate_pos_encoding`), pre-norm
blocks with layer scale, exact-erf GELU MLPs, a final LayerNorm.
`ttt_jax.checkpoint.convert_dinov2` maps a Hugging Face folder one to one.

Shapes: images `x_BHW3` (normalised RGB, H and W multiples of the patch size),
tokens `B, 1 + h * w, D`; `ViT.__call__` returns the final-normed patch tokens of
each layer in `cfg.out_layers` as `B, h, w, D` maps (DINOv2's
`get_intermediate_layers(norm=True)`), plus the last hidden state.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ttt_jax.models.drop_path import drop_path


@dataclasses.dataclass(frozen=True, kw_only=True)
class ViTConfig:
  """DINOv2 ViT (HF field names where they exist)."""
  hidden_size: int = 384
  num_hidden_layers: int = 12
  num_attention_heads: int = 6
  mlp_ratio: int = 4
  patch_size: int = 14
  image_size: int = 518            # the position-embedding grid is image_size // patch_size
  layer_norm_eps: float = 1e-6
  layerscale_value: float = 1.0
  qkv_bias: bool = True
  drop_path_rate: float = 0.0
  out_layers: tuple[int, ...] = (2, 5, 8, 11)   # 0-based blocks whose outputs the decoder reads

  def __post_init__(self):
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                       f"{self.num_attention_heads}")
    if any(not 0 <= i < self.num_hidden_layers for i in self.out_layers):
      raise ValueError(f"out_layers {self.out_layers} outside 0..{self.num_hidden_layers - 1}")


VIT_SIZES = {
    # name: (hidden, layers, heads, out_layers)
    "tiny": (32, 4, 2, (0, 1, 2, 3)),
    "small": (384, 12, 6, (2, 5, 8, 11)),     # ViT-S/14: CAST's student encoder
    "base": (768, 12, 12, (2, 5, 8, 11)),     # ViT-B/14
}


def vit_config(size: str, **kw) -> ViTConfig:
  if size not in VIT_SIZES:
    raise ValueError(f"unknown ViT size {size!r}; expected one of {sorted(VIT_SIZES)}")
  d, n, h, out = VIT_SIZES[size]
  return ViTConfig(hidden_size=d, num_hidden_layers=n, num_attention_heads=h, out_layers=out, **kw)


@functools.lru_cache(maxsize=64)
def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
  """`(n_out, n_in)` weights of torch's 1-D bicubic resize (A = -0.75, align_corners
  False, edge taps clamped), so `W @ x` resizes the leading axis of `x`."""
  a = -0.75

  def near(t):   # |t| <= 1
    return ((a + 2) * t - (a + 3)) * t * t + 1

  def far(t):    # 1 < |t| < 2
    return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a

  w = np.zeros((n_out, n_in), np.float64)
  scale = n_in / n_out
  for o in range(n_out):
    src = (o + 0.5) * scale - 0.5
    x0 = math.floor(src)
    t = src - x0
    for k, wk in zip(range(-1, 3), (far(t + 1), near(t), near(1 - t), far(2 - t))):
      w[o, min(max(x0 + k, 0), n_in - 1)] += wk
  return w.astype(np.float32)


def resize_position_grid(pos_GGD: jax.Array, h: int, w: int) -> jax.Array:
  """Bicubic resize of a `(g, g, D)` position grid to `(h, w, D)` (torch's rule)."""
  g = pos_GGD.shape[0]
  out = jnp.einsum("hi,ijd->hjd", bicubic_matrix(g, h), pos_GGD, precision="highest")
  return jnp.einsum("wj,hjd->hwd", bicubic_matrix(g, w), out, precision="highest")


class Embeddings(nn.Module):
  cfg: ViTConfig

  @nn.compact
  def __call__(self, x_BHW3):
    c = self.cfg
    p = c.patch_size
    b, hh, ww, ch = x_BHW3.shape
    if hh % p or ww % p:
      raise ValueError(f"image size {hh} x {ww} is not a multiple of the patch size {p}")
    h, w = hh // p, ww // p
    # The stride-p convolution as a patch reshape and one matmul (same weights, HWIO).
    kernel = self.param("patch_kernel", nn.initializers.lecun_normal(), (p, p, ch, c.hidden_size))
    bias = self.param("patch_bias", nn.initializers.zeros, (c.hidden_size,))
    patches = x_BHW3.reshape(b, h, p, w, p, ch).transpose(0, 1, 3, 2, 4, 5)
    tok = jnp.einsum("bhwijc,ijcd->bhwd", patches, kernel) + bias.reshape(1, 1, 1, -1)
    g = c.image_size // p
    cls = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, c.hidden_size))
    pos = self.param("position_embeddings", nn.initializers.normal(0.02), (1, 1 + g * g, c.hidden_size))
    grid = pos[0, 1:].reshape(g, g, c.hidden_size)
    if (h, w) != (g, g):   # HF keeps the grid as it is only when it already matches
      grid = resize_position_grid(grid, h, w)
    tok = tok.reshape(b, h * w, c.hidden_size) + grid.reshape(1, h * w, c.hidden_size)
    return jnp.concatenate([jnp.broadcast_to(cls + pos[:, :1], (b, 1, c.hidden_size)), tok], axis=1), (h, w)


class Attention(nn.Module):
  cfg: ViTConfig

  @nn.compact
  def __call__(self, x_BND):
    c = self.cfg
    heads, d = c.num_attention_heads, c.hidden_size // c.num_attention_heads
    q, k, v = (nn.DenseGeneral((heads, d), use_bias=c.qkv_bias, name=n)(x_BND) for n in ("query", "key", "value"))
    att = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q * d ** -0.5, k), axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", att, v)
    return nn.DenseGeneral(c.hidden_size, axis=(-2, -1), name="dense")(out)


class Block(nn.Module):
  cfg: ViTConfig
  drop_rate: float = 0.0

  @nn.compact
  def __call__(self, x_BND, deterministic: bool = True):
    c = self.cfg
    scale = lambda name: self.param(name, nn.initializers.constant(c.layerscale_value),
                                    (c.hidden_size,)).reshape(1, 1, -1)
    drop = lambda y: drop_path(self, y, self.drop_rate, deterministic)
    h = Attention(c, name="attention")(nn.LayerNorm(c.layer_norm_eps, name="norm1")(x_BND))
    x_BND = x_BND + drop(h * scale("layer_scale1"))
    h = nn.LayerNorm(c.layer_norm_eps, name="norm2")(x_BND)
    h = nn.Dense(c.hidden_size * c.mlp_ratio, name="fc1")(h)
    h = nn.Dense(c.hidden_size, name="fc2")(jax.nn.gelu(h, approximate=False))
    return x_BND + drop(h * scale("layer_scale2"))


class ViT(nn.Module):
  """DINOv2 encoder. Returns `(maps, last)`: a tuple of `B, h, w, D` maps (final-normed
  patch tokens of `cfg.out_layers`) and the final-normed last hidden state `B, 1+h*w, D`."""
  cfg: ViTConfig

  @nn.compact
  def __call__(self, x_BHW3, deterministic: bool = True):
    c = self.cfg
    x, (h, w) = Embeddings(c, name="embeddings")(x_BHW3)
    norm = nn.LayerNorm(c.layer_norm_eps, name="layernorm")
    maps = []
    for i in range(c.num_hidden_layers):
      rate = c.drop_path_rate * i / max(c.num_hidden_layers - 1, 1)
      x = Block(c, rate, name=f"layer_{i}")(x, deterministic)
      if i in c.out_layers:
        maps.append(norm(x)[:, 1:].reshape(x.shape[0], h, w, c.hidden_size))
    return tuple(maps), norm(x)
