"""The Y-SegFormer as a segmentation task: input normalisation, heads, prediction."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ttt_jax.engine.state import merge_params
from ttt_jax.models.segformer import SegFormerConfig, YSegFormer
from ttt_jax.objectives.reconstruction import visible_input

# ImageNet statistics, as SegFormer's image processor uses.
MEAN_RGB = jnp.array([0.485, 0.456, 0.406]) * 255.0
STD_RGB = jnp.array([0.229, 0.224, 0.225]) * 255.0


def normalise(frames_uint8) -> jax.Array:
  """uint8 (or float 0..255) RGB -> mean/std-normalised float32."""
  return (jnp.asarray(frames_uint8, jnp.float32) - MEAN_RGB) / STD_RGB


def check_frame_size(cfg: SegFormerConfig, height: int, width: int, what: str = "frames"):
  m = cfg.min_size_multiple
  if height % m or width % m or height < m or width < m:
    raise ValueError(f"{what}: the model takes frames whose sides are multiples of {m}; got "
                     f"{height} x {width} (resize or pad them)")


@dataclasses.dataclass(frozen=True)
class SegTask:
  """Pure functions of (trainable, frozen) variables for one model config."""
  cfg: SegFormerConfig

  @property
  def model(self):
    return YSegFormer(self.cfg)

  def segment(self, trainable, frozen, x_NHW4, *, train=False, key=None):
    rngs = {"dropout": key} if train else None
    v = merge_params(trainable, frozen)
    if train:
      return self.model.apply(v, x_NHW4, method="segment", train=True, rngs=rngs,
                              mutable=["batch_stats"])
    return self.model.apply(v, x_NHW4, method="segment")

  def reconstruct(self, trainable, frozen, x_NHW4, *, key=None):
    """Eval-mode reconstruction; with `key`, stochastic depth on (the reference's TTT
    steps run the model in train mode, which for its heads means no more than that)."""
    if key is None:
      return self.model.apply(merge_params(trainable, frozen), x_NHW4, method="reconstruct")
    return self.model.apply(merge_params(trainable, frozen), x_NHW4, method="reconstruct",
                            drop_path=True, rngs={"dropout": key})

  def logits_full(self, trainable, frozen, frames_NHW3):
    """Logits upsampled (bilinear) to the frame size: `N, H, W, C`."""
    x = visible_input(normalise(frames_NHW3))
    lo = self.segment(trainable, frozen, x)
    n, h, w, _ = frames_NHW3.shape
    return jax.image.resize(lo.astype(jnp.float32), (n, h, w, lo.shape[-1]), "bilinear")

  def predict_labels(self, trainable, frozen, frame_HW3):
    """`H, W` int32 class ids of one frame."""
    return jnp.argmax(self.logits_full(trainable, frozen, frame_HW3[None])[0], -1).astype(jnp.int32)
