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

import flax.linen as nn

from ttt_jax.models.ptv3 import PTv3, PTv3Config


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
