"""CAST's instance-segmentation model: DINOv2 ViT encoder -> DPT pixel decoder ->
Mask2Former transformer decoder, plus the pixel-contrast projection head.

Outputs of `InstanceSeg.__call__(x_BHW3, train)` (a dict):
  class_LBQK   class logits of every decoder prediction (K = classes + no object)
  mask_LBQhw   mask logits at the mask features' resolution (patch stride / 8)
  embed_BhwE   projection-head embeddings of the encoder's last map (not normalised;
               CAST's snapshot reads its res5 map through 3 bias-free layers)

Sizes: 'tiny' (tests), 'demo' and 'demo_teacher' (the embedded CPU benchmark's
student and its larger teacher of the same family), 'small' (the paper's student:
ViT-S/14, DPT, 100 queries, hidden 384, 9 layers) and 'base' (ViT-B/14).
"""
from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from ttt_jax.models.dpt import DPT, DPTConfig
from ttt_jax.models.mask2former import DecoderConfig, MaskDecoder
from ttt_jax.models.vit import ViT, ViTConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class InstanceSegConfig:
  vit: ViTConfig
  dpt: DPTConfig
  decoder: DecoderConfig
  num_classes: int = 8
  embed_dim: int = 128

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict) -> "InstanceSegConfig":
    tup = lambda x: {k: tuple(v) if isinstance(v, list) else v for k, v in x.items()}
    return cls(vit=ViTConfig(**tup(d["vit"])), dpt=DPTConfig(**tup(d["dpt"])),
               decoder=DecoderConfig(**d["decoder"]), num_classes=d["num_classes"], embed_dim=d["embed_dim"])


# name: (vit hidden, layers, heads, out_layers), (dpt features, out_channels), (queries, hidden, heads, ffn, layers)
SIZES = {
    "tiny": ((32, 4, 2, (0, 1, 2, 3)), (32, (16, 32, 32, 64)), (8, 32, 2, 64, 3)),
    "demo": ((96, 6, 3, (1, 2, 4, 5)), (64, (32, 64, 96, 128)), (24, 64, 4, 256, 3)),
    "demo_teacher": ((192, 8, 6, (1, 3, 5, 7)), (96, (48, 96, 192, 256)), (24, 96, 4, 384, 6)),
    # DPT-S / DPT-B as Depth Anything sizes them for ViT-S / ViT-B.
    "small": ((384, 12, 6, (2, 5, 8, 11)), (64, (48, 96, 192, 384)), (100, 384, 8, 2048, 9)),
    "base": ((768, 12, 12, (2, 5, 8, 11)), (128, (96, 192, 384, 768)), (100, 384, 8, 2048, 9)),
}


def instance_seg_config(size: str, num_classes: int, *, image_size: int = 518, dropout: float = 0.0,
                        drop_path_rate: float = 0.0, embed_dim: int = 128, patch_size: int = 14) -> InstanceSegConfig:
  """`image_size` sets the position-embedding grid (`image_size // patch_size` a side);
  other input sizes resize it, as DINOv2 does."""
  if size not in SIZES:
    raise ValueError(f"unknown instance model size {size!r}; expected one of {sorted(SIZES)}")
  (d, n, h, out), (f, ch), (q, hid, heads, ffn, layers) = SIZES[size]
  return InstanceSegConfig(
      vit=ViTConfig(hidden_size=d, num_hidden_layers=n, num_attention_heads=h, out_layers=out,
                    image_size=image_size, drop_path_rate=drop_path_rate, patch_size=patch_size),
      dpt=DPTConfig(features=f, out_channels=ch),
      decoder=DecoderConfig(num_queries=q, hidden=hid, heads=heads, ffn=ffn, num_layers=layers, dropout=dropout),
      num_classes=num_classes, embed_dim=embed_dim)


class InstanceSeg(nn.Module):
  cfg: InstanceSegConfig

  def setup(self):
    c = self.cfg
    self.encoder = ViT(c.vit)
    self.pixel_decoder = DPT(c.dpt)
    self.decoder = MaskDecoder(c.decoder, c.num_classes)
    self.proj = [nn.Dense(c.embed_dim, use_bias=False) for _ in range(3)]

  def _project(self, e):
    for i, layer in enumerate(self.proj):
      e = layer(e)
      e = nn.relu(e) if i < 2 else e
    return e

  def __call__(self, x_BHW3, train: bool = False):
    maps, _ = self.encoder(x_BHW3, deterministic=not train)
    mask_features, multi_scale = self.pixel_decoder(maps, train)
    cls, masks = self.decoder(mask_features, multi_scale, train)
    return {"class_LBQK": cls, "mask_LBQhw": masks, "embed_BhwE": self._project(maps[-1])}

  def embed(self, x_BHW3, train: bool = False):
    """Only the encoder and the projection head: `B, h, w, E` (the strong view's use)."""
    maps, _ = self.encoder(x_BHW3, deterministic=not train)
    return self._project(maps[-1])


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init(cfg, key, image_hw):
  x = jnp.zeros((1, *image_hw, 3), jnp.float32)
  return InstanceSeg(cfg).init({"params": key, "dropout": key}, x)


def init_variables(cfg: InstanceSegConfig, key, image_hw=None):
  """Random `params` and `batch_stats` of the model (jitted: one program, not hundreds)."""
  p = cfg.vit.patch_size
  return _init(cfg, key, tuple(image_hw or (4 * p, 4 * p)))


def abstract_variables(cfg: InstanceSegConfig):
  return jax.eval_shape(lambda: init_variables(cfg, jax.random.key(0)))
