"""SegFormer (MiT encoder + all-MLP decode head) in Flax, Y-shaped for TTT.

Layout follows Hugging Face `SegformerForSemanticSegmentation` so that
`ttt_jax.checkpoint.convert_segformer` maps its weights one to one. The Y-model
adds (i) a 4th input channel that marks masked pixels (its patch-embedding
weights start at zero, so a converted 3-channel model gives the same outputs when
nothing is masked) and (ii) a reconstruction head `recon` of the same architecture
as the decode head, whose 3 * 4 * 4 output channels at 1/4 resolution are
reinterpreted as the RGB pixels of each 4x4 cell (depth-to-space).

Shapes: images `x_NHW4` (normalised RGB + mask channel), logits `N, H/4, W/4, C`,
reconstruction `N, H, W, 3` (normalised pixel units).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ttt_jax.models.conv import Conv
from ttt_jax.models.drop_path import drop_path
from ttt_jax.models.precision import COMPUTE_DTYPES

HEAD_NORMS = ("batch", "group", "layer")
# Rematerialisation of the encoder blocks in the backward pass (`jax.checkpoint`):
# 'none'; 'blocks' saves only each block's input and recomputes the rest (least
# memory, about one more forward pass); 'blocks_dots' also keeps the matmul outputs
# without batch dimensions (less recompute, more memory).
REMATS = {"none": None, "blocks": jax.checkpoint_policies.nothing_saveable,
          "blocks_dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}

# ---------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class SegFormerConfig:
  """Architecture of a MiT-Bx SegFormer (HF field names)."""
  hidden_sizes: tuple[int, ...] = (32, 64, 160, 256)
  depths: tuple[int, ...] = (2, 2, 2, 2)
  num_attention_heads: tuple[int, ...] = (1, 2, 5, 8)
  sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
  patch_sizes: tuple[int, ...] = (7, 3, 3, 3)
  strides: tuple[int, ...] = (4, 2, 2, 2)
  mlp_ratio: int = 4
  decoder_hidden_size: int = 256
  num_labels: int = 19
  num_channels: int = 4          # RGB + mask channel
  layer_norm_eps: float = 1e-5   # torch nn.LayerNorm default, as HF uses
  classifier_dropout: float = 0.1
  # mmseg's decode head drops whole channels (Dropout2d), as SegFormer's and DiTTA's code
  # do; False drops single activations (HF's nn.Dropout). Only in train mode.
  classifier_dropout_2d: bool = True
  # Normalisation after both heads' fuse layer: 'batch' (SegFormer, running statistics),
  # 'group' (32 groups, or fewer when the width has no such divisor) or 'layer' (per pixel
  # over channels); the last two keep no statistics, like video-TTT's Mask2Former heads.
  head_norm: str = "batch"
  # Stochastic depth of the encoder blocks (rate rising linearly to this over the blocks),
  # active whenever the encoder runs non-deterministically (joint training, TTT steps).
  drop_path_rate: float = 0.0
  # Compute options, not architecture: same parameters. `remat`: see REMATS (same
  # outputs); `compute_dtype`: 'bfloat16' runs the forward in bfloat16 with float32
  # state (`SegTask.apply`, `models/precision.py`).
  remat: str = "none"
  compute_dtype: str = "float32"
  # `scan_blocks`: each stage's blocks run as one `lax.scan` over their stacked
  # parameters (stored per block as ever), so XLA compiles one block per stage instead of
  # all of them (B5 has 52); same outputs within float rounding. Stochastic depth then
  # draws each block's mask from `fold_in(dropout key, block)`: other draws, same law.
  scan_blocks: bool = False

  def __post_init__(self):
    if self.compute_dtype not in COMPUTE_DTYPES:
      raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}")
    if self.remat not in REMATS:
      raise ValueError(f"remat must be one of {sorted(REMATS)}, got {self.remat!r}")
    if self.head_norm not in HEAD_NORMS:
      raise ValueError(f"head_norm must be one of {HEAD_NORMS}, got {self.head_norm!r}")
    if not 0.0 <= self.drop_path_rate < 1.0:
      raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

  @property
  def min_size_multiple(self) -> int:
    """Input sides must be a multiple of this (total downsampling)."""
    m = 1
    for s in self.strides:
      m *= s
    return m

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def with_compute_options(self, options) -> "SegFormerConfig":
    """This architecture with a run's `COMPUTE_OPTIONS` from `options` (a mapping such
    as `config.model`); an option it does not name takes its default."""
    return dataclasses.replace(self, **{k: options.get(k, _DEFAULTS[k]) for k in COMPUTE_OPTIONS})

  def architecture(self) -> "SegFormerConfig":
    """The architecture alone, every compute option at its default (what a checkpoint keeps)."""
    return self.with_compute_options({})


# Fields of SegFormerConfig that are a run's compute choices: same parameters, same
# outputs to round-off, so a checkpoint records their defaults.
COMPUTE_OPTIONS = ("remat", "compute_dtype", "scan_blocks")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SegFormerConfig)}


_MIT = {
    "b0": dict(hidden_sizes=(32, 64, 160, 256), depths=(2, 2, 2, 2), decoder_hidden_size=256),
    "b1": dict(hidden_sizes=(64, 128, 320, 512), depths=(2, 2, 2, 2), decoder_hidden_size=256),
    "b2": dict(hidden_sizes=(64, 128, 320, 512), depths=(3, 4, 6, 3), decoder_hidden_size=768),
    "b3": dict(hidden_sizes=(64, 128, 320, 512), depths=(3, 4, 18, 3), decoder_hidden_size=768),
    "b4": dict(hidden_sizes=(64, 128, 320, 512), depths=(3, 8, 27, 3), decoder_hidden_size=768),
    "b5": dict(hidden_sizes=(64, 128, 320, 512), depths=(3, 6, 40, 3), decoder_hidden_size=768),
    # For tests and the CPU benchmark: a few thousand parameters.
    "tiny": dict(hidden_sizes=(8, 16, 32, 32), depths=(1, 1, 1, 1), num_attention_heads=(1, 1, 2, 2),
                 decoder_hidden_size=32),
    # The embedded default: a small model that trains in minutes on 2 CPU cores.
    "small": dict(hidden_sizes=(16, 32, 64, 96), depths=(1, 1, 2, 1), num_attention_heads=(1, 1, 2, 4),
                  decoder_hidden_size=64),
}


def segformer_config(size: str, num_labels: int, **overrides) -> SegFormerConfig:
  """`segformer_config('b0', 19)`: the MiT-B0..B5, 'small' or 'tiny' sizes."""
  if size not in _MIT:
    raise ValueError(f"unknown SegFormer size {size!r}; expected one of {sorted(_MIT)}")
  return SegFormerConfig(**{**_MIT[size], "num_labels": num_labels, **overrides})


# ---------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------


class EfficientSelfAttention(nn.Module):
  hidden: int
  heads: int
  sr_ratio: int
  eps: float

  @nn.compact
  def __call__(self, x_NLC, h, w):
    n, l, c = x_NLC.shape
    dh = c // self.heads
    q = nn.Dense(c, name="query")(x_NLC)
    kv = x_NLC
    if self.sr_ratio > 1:
      kv = Conv(c, (self.sr_ratio, self.sr_ratio), (self.sr_ratio, self.sr_ratio), name="sr")(
          kv.reshape(n, h, w, c))
      kv = kv.reshape(n, -1, c)
      kv = nn.LayerNorm(self.eps, name="layer_norm")(kv)
    k = nn.Dense(c, name="key")(kv)
    v = nn.Dense(c, name="value")(kv)
    split = lambda t: t.reshape(n, -1, self.heads, dh)
    out = jax.nn.dot_product_attention(split(q), split(k), split(v))
    return nn.Dense(c, name="output")(out.reshape(n, l, c))


class MixFFN(nn.Module):
  hidden: int
  mlp_ratio: int

  @nn.compact
  def __call__(self, x_NLC, h, w):
    n, _, _ = x_NLC.shape
    d = self.hidden * self.mlp_ratio
    x = nn.Dense(d, name="dense1")(x_NLC)
    x = Conv(d, (3, 3), padding=1, groups=d, name="dwconv")(x.reshape(n, h, w, d))
    x = nn.gelu(x.reshape(n, h * w, d), approximate=False)
    return nn.Dense(self.hidden, name="dense2")(x)


class Block(nn.Module):
  hidden: int
  heads: int
  sr_ratio: int
  mlp_ratio: int
  eps: float
  drop_path: float = 0.0

  @nn.compact
  def __call__(self, x_NLC, h, w, deterministic: bool = True):
    y = nn.LayerNorm(self.eps, name="layer_norm_1")(x_NLC)
    y = EfficientSelfAttention(self.hidden, self.heads, self.sr_ratio, self.eps, name="attention")(y, h, w)
    x = x_NLC + drop_path(self, y, self.drop_path, deterministic)
    y = nn.LayerNorm(self.eps, name="layer_norm_2")(x)
    y = MixFFN(self.hidden, self.mlp_ratio, name="mlp")(y, h, w)
    return x + drop_path(self, y, self.drop_path, deterministic)


def _zero_mask_channel_init(base):
  """Kernel init whose input channels past the 3rd (the mask channel) start at 0."""
  def init(key, shape, dtype=jnp.float32):
    k = base(key, shape, dtype)
    return k.at[:, :, 3:, :].set(0.0)
  return init


class MiTEncoder(nn.Module):
  """Mix Transformer: 4 stages, features at strides 4, 8, 16, 32."""
  config: SegFormerConfig

  @nn.compact
  def __call__(self, x_NHWC, deterministic: bool = True) -> list[jax.Array]:
    """Features of the 4 stages; `deterministic=False` turns stochastic depth on."""
    cfg = self.config
    feats = []
    x = x_NHWC
    rates = np.linspace(0.0, cfg.drop_path_rate, sum(cfg.depths)).tolist()
    b = 0
    for i in range(len(cfg.hidden_sizes)):
      p = cfg.patch_sizes[i]
      init = nn.initializers.lecun_normal()
      if i == 0:
        init = _zero_mask_channel_init(init)
      x = Conv(cfg.hidden_sizes[i], (p, p), (cfg.strides[i],) * 2, padding=p // 2,
               kernel_init=init, name=f"patch_embed{i}")(x)
      n, h, w, c = x.shape
      t = nn.LayerNorm(cfg.layer_norm_eps, name=f"patch_norm{i}")(x.reshape(n, h * w, c))
      d = cfg.depths[i]
      if cfg.scan_blocks and d > 1 and not self.is_initializing():
        t = self._scanned_blocks(i, t, h, w, deterministic, rates[b:b + d])
        b += d
      else:
        block = Block
        if cfg.remat != "none":  # h, w and deterministic are Python values (self is argument 0)
          block = nn.remat(Block, static_argnums=(2, 3, 4), policy=REMATS[cfg.remat])
        for j in range(d):
          t = block(c, cfg.num_attention_heads[i], cfg.sr_ratios[i], cfg.mlp_ratio,
                    cfg.layer_norm_eps, rates[b], name=f"block{i}_{j}")(t, h, w, deterministic)
          b += 1
      t = nn.LayerNorm(cfg.layer_norm_eps, name=f"norm{i}")(t)
      x = t.reshape(n, h, w, c)
      feats.append(x)
    return feats

  def _scanned_blocks(self, i, t_NLC, h, w, deterministic, rates):
    """Stage `i`'s blocks `block{i}_0..` as one `lax.scan`: their parameters (this
    module's own variables, so gradients reach them) are stacked on a leading axis and
    each step applies an unbound `Block` to one slice."""
    cfg = self.config
    names = [f"block{i}_{j}" for j in range(len(rates))]
    stacked = jax.tree.map(lambda *p: jnp.stack(p), *[self.variables["params"][n] for n in names])
    block = Block(t_NLC.shape[-1], cfg.num_attention_heads[i], cfg.sr_ratios[i], cfg.mlp_ratio,
                  cfg.layer_norm_eps, max(rates), parent=None)
    key = None if deterministic or max(rates) == 0.0 else self.make_rng("dropout")

    def step(t, xs):
      params, rate, j = xs
      if key is None:  # no stochastic depth here: keep the Python rate, so no rng is asked
        return block.apply({"params": params}, t, h, w, deterministic), None
      return block.clone(drop_path=rate, parent=None).apply(
          {"params": params}, t, h, w, deterministic,
          rngs={"dropout": jax.random.fold_in(key, j)}), None

    if cfg.remat != "none":
      step = jax.checkpoint(step, policy=REMATS[cfg.remat], prevent_cse=False)
    xs = (stacked, jnp.asarray(rates, jnp.float32), jnp.arange(len(rates)))
    return jax.lax.scan(step, t_NLC, xs)[0]


# ---------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------


def norm_groups(width: int, most: int = 32) -> int:
  """The heads' GroupNorm group count: 32, or the largest divisor of `width` below it."""
  return max(g for g in range(1, most + 1) if width % g == 0)


class DecodeHead(nn.Module):
  """All-MLP head: per-stage linear, upsample to 1/4, concat, fuse, norm, classify."""
  hidden: int
  out_channels: int
  dropout: float = 0.1
  dropout_2d: bool = True
  norm: str = "batch"

  @nn.compact
  def __call__(self, feats, *, train: bool = False, return_features: bool = False):
    """Logits `N, H/4, W/4, C`; with `return_features` also the fused features
    (after BatchNorm and ReLU) `N, H/4, W/4, hidden`."""
    n, h, w, _ = feats[0].shape
    ups = []
    for i, f in enumerate(feats):
      y = nn.Dense(self.hidden, name=f"linear_c{i}")(f)
      if y.shape[1:3] != (h, w):
        y = jax.image.resize(y, (n, h, w, self.hidden), "bilinear")
      ups.append(y)
    x = jnp.concatenate(ups[::-1], axis=-1)
    x = nn.Dense(self.hidden, use_bias=False, name="linear_fuse")(x)
    if self.norm == "batch":
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="batch_norm")(x)
    elif self.norm == "group":
      x = nn.GroupNorm(num_groups=norm_groups(self.hidden), epsilon=1e-5, name="group_norm")(x)
    else:
      x = nn.LayerNorm(epsilon=1e-5, name="layer_norm")(x)
    fused = nn.relu(x)
    # Dropout2d: one draw per (sample, channel), broadcast over the pixels.
    bdims = (1, 2) if self.dropout_2d else ()
    x = nn.Dropout(self.dropout, broadcast_dims=bdims, deterministic=not train)(fused)
    logits = nn.Dense(self.out_channels, name="classifier")(x)
    return (logits, fused) if return_features else logits


def depth_to_space(x_NhwC, r: int):
  """`N, h, w, r*r*c` -> `N, h*r, w*r, c` (channels ordered (ry, rx, c))."""
  n, h, w, c = x_NhwC.shape
  x = x_NhwC.reshape(n, h, w, r, r, c // (r * r))
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h * r, w * r, c // (r * r))


class YSegFormer(nn.Module):
  """Shared MiT encoder, main head `decode_head` (h) and `recon` head (g).

  Every method takes `train` (heads' BatchNorm on batch statistics, decoder dropout,
  stochastic depth; needs a 'dropout' rng) and `drop_path` (stochastic depth alone,
  heads in eval mode, as TTT steps on a model without running statistics use it;
  None = follow `train`).
  """
  config: SegFormerConfig

  def setup(self):
    cfg = self.config
    self.encoder = MiTEncoder(cfg)
    self.decode_head = DecodeHead(cfg.decoder_hidden_size, cfg.num_labels, cfg.classifier_dropout,
                                  cfg.classifier_dropout_2d, cfg.head_norm)
    self.recon = DecodeHead(cfg.decoder_hidden_size, 3 * 16, 0.0, norm=cfg.head_norm)

  def _feats(self, x_NHWC, train, drop_path):
    return self.encoder(x_NHWC, deterministic=not (train if drop_path is None else drop_path))

  def __call__(self, x_NHWC, *, train: bool = False, drop_path: bool | None = None):
    """Both heads (used by `init` and joint training)."""
    feats = self._feats(x_NHWC, train, drop_path)
    return (self.decode_head(feats, train=train),
            depth_to_space(self.recon(feats, train=train), 4))

  def segment(self, x_NHWC, *, train: bool = False, drop_path: bool | None = None):
    """Class logits `N, H/4, W/4, C`."""
    return self.decode_head(self._feats(x_NHWC, train, drop_path), train=train)

  def segment_with_features(self, x_NHWC, *, train: bool = False, drop_path: bool | None = None):
    """`(logits N, H/4, W/4, C, fused decoder features N, H/4, W/4, hidden)`."""
    return self.decode_head(self._feats(x_NHWC, train, drop_path), train=train, return_features=True)

  def reconstruct(self, x_NHWC, *, train: bool = False, drop_path: bool | None = None):
    """Reconstructed normalised pixels `N, H, W, 3`."""
    return depth_to_space(self.recon(self._feats(x_NHWC, train, drop_path), train=train), 4)
