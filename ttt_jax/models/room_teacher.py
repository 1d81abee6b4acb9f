"""The stand-in 2D teacher: a small convolutional network whose stride-4 features play
DINOv2's patch features where no foundation-model weights can be had.

It is NOT DINOv2. It was trained once (`ttt-jax pretrain configs/room_teacher.py`) to
segment rooms rendered in random styles, colours, lights and sensor noise far
beyond either TTT-KD dataset's (`rooms.broad_views`), then frozen and shipped
(`ttt_jax/assets/room_teacher`). What TTT-KD needs of a teacher is what this one
has: features that keep their meaning across appearance shifts the 3D model has
not seen. Its features are cached exactly as DINOv2's are (`sam2_bridge.cache_schema`,
kind 'features', float16 `V, h, w, C`).

Input: RGB uint8 `B, H, W, 3`, normalised with ImageNet's mean and std as DINOv2's.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

IMG_MEAN = jnp.array([0.485, 0.456, 0.406], jnp.float32).reshape(1, 1, 1, 3)
IMG_STD = jnp.array([0.229, 0.224, 0.225], jnp.float32).reshape(1, 1, 1, 3)


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
  """Widths of the three stages (full, 1/2, 1/4 resolution), the feature width and
  the training head's classes."""
  widths: tuple[int, ...] = (24, 48, 64)
  feature_dim: int = 32
  num_classes: int = 9
  stride: int = 4

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict) -> "TeacherConfig":
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class _ConvNormAct(nn.Module):
  features: int
  stride: int = 1
  dilation: int = 1

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, (3, 3), strides=self.stride, kernel_dilation=self.dilation, padding="SAME",
                use_bias=False, name="conv")(x)
    return nn.gelu(nn.GroupNorm(num_groups=min(8, self.features), name="gn")(x), approximate=False)


class RoomTeacher(nn.Module):
  """`features` (`B, H/4, W/4, feature_dim`, unit-free, LayerNorm-ed as DINOv2's
  last hidden state) and the training head's logits over them."""
  cfg: TeacherConfig

  def setup(self):
    w = self.cfg.widths
    self.c0, self.c1, self.c2 = _ConvNormAct(w[0]), _ConvNormAct(w[1], stride=2), _ConvNormAct(w[1])
    self.c3 = _ConvNormAct(w[2], stride=2)
    self.c4, self.c5 = _ConvNormAct(w[2], dilation=2), _ConvNormAct(w[2], dilation=4)
    self.out = nn.Dense(self.cfg.feature_dim)
    self.out_norm = nn.LayerNorm()
    self.head = nn.Dense(self.cfg.num_classes)

  def features(self, images_BHW3):
    x = (images_BHW3.astype(jnp.float32) / 255.0 - IMG_MEAN) / IMG_STD
    x = self.c2(self.c1(self.c0(x)))
    x = self.c3(x)
    x = x + self.c4(x)   # dilated residual stages: context of a quarter of the image
    x = x + self.c5(x)
    return self.out_norm(self.out(x))

  def __call__(self, images_BHW3):
    return self.head(self.features(images_BHW3))


def abstract_variables(cfg: TeacherConfig):
  return jax.eval_shape(lambda: RoomTeacher(cfg).init(jax.random.key(0), jnp.zeros((1, 16, 16, 3), jnp.uint8)))
