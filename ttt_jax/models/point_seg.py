"""TTT-KD's model: a 3D backbone with two projectors.

- `backbone` (psi_3D): the PTv3-style encoder-decoder (`ptv3.PTv3`);
- `seg_head` (rho_Y): one Linear layer to the class logits, as Pointcept's seg head;
- `kd_fc1`, `kd_fc2` (rho_2D): Linear, GELU, Linear to the frozen 2D teacher's
  feature width.

The paper does not give the projectors' shapes. rho_2D is a two-layer MLP so that
the teacher's feature geometry need not be a linear image of the features the class
head reads; at test time the distillation gradient reaches the backbone through it.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from ttt_jax.models.ptv3 import PTv3, PTv3Config, ptv3_config, scene_levels


@dataclasses.dataclass(frozen=True)
class PointSegConfig:
  """A `PointSegmenter`: its backbone, classes and the teacher's feature width."""
  backbone: PTv3Config
  num_classes: int
  teacher_dim: int

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict) -> "PointSegConfig":
    b = {k: tuple(v) if isinstance(v, list) else v for k, v in d["backbone"].items()}
    return cls(PTv3Config(**b), int(d["num_classes"]), int(d["teacher_dim"]))

  def model(self) -> "PointSegmenter":
    return PointSegmenter(self.backbone, self.num_classes, self.teacher_dim)


def point_seg_config(size: str, num_classes: int, teacher_dim: int, **backbone) -> PointSegConfig:
  return PointSegConfig(ptv3_config(size, **backbone), num_classes, teacher_dim)


def init_variables(cfg: PointSegConfig, key: jax.Array, num_points: int = 64):
  """Random variables (`params`, `batch_stats`); their shapes do not depend on the
  scene, so a small random scene initialises them."""
  return _init(cfg, key, num_points)


@jax.jit(static_argnums=(0, 2))
def _init(cfg, key, num_points):
  coord = jax.random.uniform(jax.random.key(1), (num_points, 3)) * 2.0
  valid = jnp.ones(num_points, bool)
  feat = jnp.zeros((num_points, cfg.backbone.in_channels), jnp.float32)
  return cfg.model().init(key, feat, scene_levels(coord, valid, cfg.backbone))


def abstract_variables(cfg: PointSegConfig):
  return jax.eval_shape(lambda: init_variables(cfg, jax.random.key(0)))


class PointSegmenter(nn.Module):
  """`(logits_NK, kd_ND)` of a padded scene (`feat_NC`, `levels` from
  `ptv3.scene_levels`); `segment` gives the logits alone."""
  cfg: PTv3Config
  num_classes: int
  teacher_dim: int

  def setup(self):
    self.backbone = PTv3(self.cfg)
    self.seg_head = nn.Dense(self.num_classes)
    self.kd_fc1 = nn.Dense(self.cfg.out_channels)
    self.kd_fc2 = nn.Dense(self.teacher_dim)

  def __call__(self, feat_NC, levels, train: bool = False):
    f = self.backbone(feat_NC, levels, train)
    return self.seg_head(f), self.kd_fc2(nn.gelu(self.kd_fc1(f), approximate=False))

  def segment(self, feat_NC, levels, train: bool = False):
    return self.seg_head(self.backbone(feat_NC, levels, train))
