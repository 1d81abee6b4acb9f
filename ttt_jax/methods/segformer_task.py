"""The Y-SegFormer as a segmentation task: heads and prediction as pure functions
of the model's full variables (a nested dict; `Context.variables(trainable)`)."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ttt_jax.models.inputs import normalise, visible_input
from ttt_jax.models.precision import apply_in
from ttt_jax.models.segformer import SegFormerConfig, YSegFormer


def check_frame_size(cfg: SegFormerConfig, height: int, width: int, what: str = "frames"):
  m = cfg.min_size_multiple
  if height % m or width % m or height < m or width < m:
    raise ValueError(f"{what}: the model takes frames whose sides are multiples of {m}; got "
                     f"{height} x {width} (resize or pad them)")


@dataclasses.dataclass(frozen=True)
class SegTask:
  """Pure functions of the model's variables for one model config."""
  cfg: SegFormerConfig

  @property
  def model(self):
    return YSegFormer(self.cfg)

  def apply(self, variables, *args, **kwargs):
    """`model.apply` in the config's compute dtype (float32 in and out)."""
    return apply_in(self.cfg.compute_dtype, self.model.apply, variables, *args, **kwargs)

  def segment(self, variables, x_NHW4, *, train=False, key=None):
    """Logits `N, H/4, W/4, C`; with `train`, `(logits, {'batch_stats': ...})` from
    batch statistics, dropout and stochastic depth (drawn from `key`)."""
    if train:
      return self.apply(variables, x_NHW4, method="segment", train=True, rngs={"dropout": key},
                              mutable=["batch_stats"])
    return self.apply(variables, x_NHW4, method="segment")

  def reconstruct(self, variables, x_NHW4, *, key=None):
    """Eval-mode reconstruction; with `key`, stochastic depth on (the reference's TTT
    steps run the model in train mode, which for its heads means no more than that)."""
    if key is None:
      return self.apply(variables, x_NHW4, method="reconstruct")
    return self.apply(variables, x_NHW4, method="reconstruct", drop_path=True,
                            rngs={"dropout": key})

  def logits_full(self, variables, frames_NHW3):
    """Logits upsampled (bilinear) to the frame size: `N, H, W, C`."""
    lo = self.segment(variables, visible_input(normalise(frames_NHW3)))
    n, h, w, _ = frames_NHW3.shape
    return jax.image.resize(lo.astype(jnp.float32), (n, h, w, lo.shape[-1]), "bilinear")

  def predict_labels(self, variables, frame_HW3):
    """`H, W` int32 class ids of one frame."""
    return jnp.argmax(self.logits_full(variables, frame_HW3[None])[0], -1).astype(jnp.int32)
