"""A Point-Transformer-V3-style encoder-decoder in Flax, at static shapes.

Follows Pointcept's `point_transformer_v3m1_base.py` (see METHODS.md, TTT-KD):

- embedding: submanifold convolution, kernel 5, then BatchNorm and GELU;
- encoder stage s: grid pooling by 2 (s > 0: Linear, max over each cluster of
  cells sharing a parent, BatchNorm, GELU), then `enc_depths[s]` blocks;
- block: conditional positional encoding (submanifold convolution, kernel 3, Linear,
  LayerNorm; residual), pre-norm attention within patches of the serialised order,
  pre-norm MLP (ratio 4, GELU); stochastic depth per point (timm's DropPath on
  Pointcept's `N x C` features); block i of a stage uses order i mod 4;
- decoder stage s: unpooling (Linear + BatchNorm + GELU on the coarse and the skip
  features, skip + coarse[cluster]), then `dec_depths[s]` blocks.

Where this differs from Pointcept, and why:
- Shapes are static: every level keeps the scene's `N` rows with a validity mask
  (pooled clusters in the first rows), so one compiled program serves every scene and
  scenes vmap. Attention patches are cut along each order over all `N` rows, padding
  last and masked out as keys (Pointcept pads each patch by repeating points).
- Block orders are fixed (i mod 4); Pointcept shuffles them per training pass.
- BatchNorm (embedding, pooling, unpooling) uses the validity mask, so padding never
  enters the statistics.

Per scene, `scene_levels` computes the grid, the curve orders, the convolution
neighbours and the pooling clusters of every level once (pure, jitted with the model).
"""
from __future__ import annotations

import dataclasses
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ttt_jax.models import grid_pool
from ttt_jax.models.drop_path import drop_path
from ttt_jax.models.point_ops import PatchAttention, SubMConv3d, neighbours
from ttt_jax.models.serialization import ORDERS, encode, grid_coord, serialize

OFFSETS_5 = np.array(list(itertools.product(range(-2, 3), repeat=3)), np.int32)   # 125 x 3
BN_MOMENTUM = 0.99   # Pointcept's BatchNorm1d momentum 0.01
BN_EPS = 1e-3
LN_EPS = 1e-5        # PyTorch's LayerNorm default


@dataclasses.dataclass(frozen=True)
class PTv3Config:
  """Sizes of the backbone.

  Attributes:
    in_channels: input features per point (colour and normal: 6).
    enc_depths, enc_channels, enc_heads: per encoder stage (stage 0 at full resolution).
    dec_depths, dec_channels, dec_heads: per decoder stage, finest first (one fewer
      than the encoder's); empty for an encoder only.
    patch: attention patch (points); a scene's padded size `N` must be a multiple of
      `min(patch, N)`.
    mlp_ratio: hidden width of the block MLP over its channels.
    grid_size: voxel side in metres.
    depth: bits per grid axis (a scene spans at most `grid_size * 2**depth` metres).
    drop_path: the deepest block's stochastic-depth rate (linear in block index).
    bn_momentum: BatchNorm's running-average momentum (Flax's convention; 0 makes a
      train-mode pass store the batch's own statistics, as recomputing them for a
      test scene does).
  """
  in_channels: int = 6
  enc_depths: tuple[int, ...] = (2, 2, 2, 6, 2)
  enc_channels: tuple[int, ...] = (32, 64, 128, 256, 512)
  enc_heads: tuple[int, ...] = (2, 4, 8, 16, 32)
  dec_depths: tuple[int, ...] = (2, 2, 2, 2)
  dec_channels: tuple[int, ...] = (64, 64, 128, 256)
  dec_heads: tuple[int, ...] = (4, 4, 8, 16)
  patch: int = 1024
  mlp_ratio: int = 4
  grid_size: float = 0.02
  depth: int = 10
  drop_path: float = 0.3
  bn_momentum: float = BN_MOMENTUM

  def __post_init__(self):
    n = len(self.enc_depths)
    if not len(self.enc_channels) == len(self.enc_heads) == n:
      raise ValueError("enc_depths, enc_channels and enc_heads need one entry per encoder stage")
    if self.dec_depths and not len(self.dec_depths) == len(self.dec_channels) == len(self.dec_heads) == n - 1:
      raise ValueError(f"the decoder needs {n - 1} stages (one fewer than the encoder's {n})")
    if self.depth - (n - 1) < 1:
      raise ValueError(f"depth {self.depth} bits cannot hold {n - 1} poolings by 2")

  @property
  def levels(self) -> int:
    return len(self.enc_depths)

  @property
  def out_channels(self) -> int:
    return self.dec_channels[0] if self.dec_depths else self.enc_channels[-1]


SIZES = {
    # Tests: two levels, one block each.
    "tiny": dict(enc_depths=(1, 1), enc_channels=(16, 32), enc_heads=(1, 2), dec_depths=(1,),
                 dec_channels=(16,), dec_heads=(1,), patch=64, drop_path=0.0, grid_size=0.05),
    # TTT-KD's shipped model and demo: three levels on 2048-point rooms at 15 cm (about
    # the points' spacing there, as Pointcept's 2 cm is on ScanNet's dense scans).
    "demo": dict(enc_depths=(1, 1, 1), enc_channels=(16, 32, 64), enc_heads=(1, 2, 4), dec_depths=(1, 1),
                 dec_channels=(32, 32), dec_heads=(2, 2), patch=128, drop_path=0.1, grid_size=0.15),
    # Three levels on a few thousand points at 5 cm.
    "small": dict(enc_depths=(1, 1, 2), enc_channels=(32, 64, 128), enc_heads=(2, 4, 8),
                  dec_depths=(1, 1), dec_channels=(48, 64), dec_heads=(2, 4), patch=256,
                  drop_path=0.1, grid_size=0.05),
    # Pointcept's ScanNet configuration (PTv3 base).
    "scannet": dict(),
}


def ptv3_config(size: str = "scannet", **over) -> PTv3Config:
  if size not in SIZES:
    raise ValueError(f"unknown PTv3 size {size!r}; expected one of {sorted(SIZES)}")
  return PTv3Config(**{**SIZES[size], **over})


@struct.dataclass
class Level:
  """One resolution of a scene (all `N` rows; the first K valid past level 0).

  Attributes:
    valid: `N` bool.
    grid: `N, 3` int32 grid coordinates at this level.
    perm, inverse: `O, N` each order's sorting permutation and its inverse.
    nbr: `N, 27` rows of the 3 x 3 x 3 neighbour cells (-1: none).
    cluster: `N`: each row of the level above (finer) -> its row here (level 0: arange).
  """
  valid: jax.Array
  grid: jax.Array
  perm: jax.Array
  inverse: jax.Array
  nbr: jax.Array
  cluster: jax.Array


def _level(grid_N3, valid_N, depth: int, cluster_N) -> Level:
  perms, invs = [], []
  for order in ORDERS:
    _, perm, inverse = serialize(grid_N3, valid_N, order, depth)
    perms.append(perm)
    invs.append(inverse)
  return Level(valid=valid_N, grid=grid_N3, perm=jnp.stack(perms), inverse=jnp.stack(invs),
               nbr=neighbours(grid_N3, valid_N, depth), cluster=cluster_N)


def scene_levels(coord_N3: jax.Array, valid_N: jax.Array, cfg: PTv3Config) -> tuple[Level, ...]:
  """The grid, orders, neighbours and pooling clusters of every level of one scene.

  Level s+1 pools level s by 2: rows whose z-order codes agree after `>> 3` (cells
  sharing a parent) form one cluster; a cluster's grid cell is the parent's.
  """
  g = grid_coord(coord_N3, valid_N, cfg.grid_size)
  n = coord_N3.shape[0]
  levels = [_level(g, valid_N, cfg.depth, jnp.arange(n, dtype=jnp.int32))]
  for s in range(1, cfg.levels):
    prev, d = levels[-1], cfg.depth - s
    code = encode(prev.grid, "z", d + 1)
    cluster, cvalid, _ = grid_pool.clusters(code, prev.valid)
    parent = jax.ops.segment_max(jnp.where(prev.valid[:, None], prev.grid >> 1, 0), cluster, num_segments=n)
    grid = jnp.where(cvalid[:, None], parent, 0)
    levels.append(_level(grid, cvalid, d, cluster))
  return tuple(levels)


def check_extent(coord_N3: np.ndarray, valid_N: np.ndarray, cfg: PTv3Config, what: str = "scene"):
  """Raises if a scene spans more cells per axis than `cfg.depth` bits hold."""
  c = np.asarray(coord_N3)[np.asarray(valid_N, bool)]
  if not len(c):
    raise ValueError(f"{what}: no valid point")
  span = (c.max(0) - c.min(0)) / cfg.grid_size
  if np.any(span >= 2 ** cfg.depth):
    raise ValueError(f"{what}: spans {np.round(span * cfg.grid_size, 2).tolist()} m, more than "
                     f"{cfg.grid_size * 2 ** cfg.depth:g} m ({2 ** cfg.depth} cells of {cfg.grid_size} m) "
                     "per axis; raise depth or grid_size, or crop the scene")


class _NormAct(nn.Module):
  """Masked BatchNorm (padding rows never enter the statistics), then GELU."""
  momentum: float = BN_MOMENTUM

  @nn.compact
  def __call__(self, x_NC, valid_N, train: bool):
    y = nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=BN_EPS, name="bn")(
        x_NC, mask=valid_N[:, None])
    return nn.gelu(y, approximate=False)


class PointBlock(nn.Module):
  channels: int
  heads: int
  patch: int
  mlp_ratio: int
  order: int
  drop_path: float = 0.0

  @nn.compact
  def __call__(self, x_NC, lv: Level, deterministic: bool = True):
    c = self.channels
    y = SubMConv3d(c, name="cpe_conv")(x_NC, lv.nbr)
    y = nn.LayerNorm(LN_EPS, name="cpe_norm")(nn.Dense(c, name="cpe_linear")(y))
    x = x_NC + y
    y = nn.LayerNorm(LN_EPS, name="norm1")(x)
    patch = min(self.patch, x.shape[0])
    y = PatchAttention(c, self.heads, patch, name="attn")(y, lv.valid, lv.perm[self.order], lv.inverse[self.order])
    x = x + drop_path(self, y, self.drop_path, deterministic)
    y = nn.LayerNorm(LN_EPS, name="norm2")(x)
    y = nn.Dense(c * self.mlp_ratio, name="fc1")(y)
    y = nn.Dense(c, name="fc2")(nn.gelu(y, approximate=False))
    x = x + drop_path(self, y, self.drop_path, deterministic)
    return jnp.where(lv.valid[:, None], x, 0.0)


class PTv3(nn.Module):
  """Per-point features `N, cfg.out_channels` of a padded scene.

  Call with `feat_NC` (`cfg.in_channels` per point) and the scene's `levels`
  (`scene_levels`); padding rows come out as zeros.
  """
  cfg: PTv3Config

  @nn.compact
  def __call__(self, feat_NC, levels: tuple[Level, ...], train: bool = False):
    cfg = self.cfg
    det = not train
    # Pointcept's rates: linear from 0 over the encoder's blocks, and again over the
    # decoder's (finest stage first).
    enc_rates = iter(np.linspace(0.0, cfg.drop_path, sum(cfg.enc_depths)).tolist())
    dec_rates = np.linspace(0.0, cfg.drop_path, max(sum(cfg.dec_depths), 1)).tolist()
    lv = levels[0]
    nbr5 = neighbours(lv.grid, lv.valid, cfg.depth, OFFSETS_5)
    x = SubMConv3d(cfg.enc_channels[0], use_bias=False, name="embed_conv")(feat_NC, nbr5)
    x = _NormAct(cfg.bn_momentum, name="embed_norm")(x, lv.valid, train)
    skips = []
    for s in range(cfg.levels):
      lv = levels[s]
      if s > 0:
        y = nn.Dense(cfg.enc_channels[s], name=f"pool{s}_proj")(x)
        x = grid_pool.pool(y, lv.cluster, levels[s - 1].valid, lv.valid, reduce="max")
        x = _NormAct(cfg.bn_momentum, name=f"pool{s}_norm")(x, lv.valid, train)
      for i in range(cfg.enc_depths[s]):
        x = PointBlock(cfg.enc_channels[s], cfg.enc_heads[s], cfg.patch, cfg.mlp_ratio, i % len(ORDERS),
                       next(enc_rates), name=f"enc{s}_block{i}")(x, lv, det)
      skips.append(x)
    if not cfg.dec_depths:
      return x
    for s in range(cfg.levels - 2, -1, -1):
      lv, coarse = levels[s], levels[s + 1]
      c = cfg.dec_channels[s]
      up = _NormAct(cfg.bn_momentum, name=f"unpool{s}_norm")(nn.Dense(c, name=f"unpool{s}_proj")(x), coarse.valid, train)
      skip = _NormAct(cfg.bn_momentum, name=f"unpool{s}_skip_norm")(nn.Dense(c, name=f"unpool{s}_skip_proj")(skips[s]),
                                                    lv.valid, train)
      x = jnp.where(lv.valid[:, None], skip + grid_pool.unpool(up, coarse.cluster), 0.0)
      for i in range(cfg.dec_depths[s]):
        x = PointBlock(c, cfg.dec_heads[s], cfg.patch, cfg.mlp_ratio, i % len(ORDERS),
                       dec_rates[sum(cfg.dec_depths[:s]) + i], name=f"dec{s}_block{i}")(x, lv, det)
    return x
