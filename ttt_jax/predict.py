"""Per-frame logits of a model directory on a uint8 video array (`ttt-jax predict`)."""
from __future__ import annotations

import jax
import numpy as np

from ttt_jax.checkpoint.model_io import load_model
from ttt_jax.data.checks import check_frames
from ttt_jax.methods.segformer_task import SegTask, check_frame_size
from ttt_jax.models.inputs import normalise, visible_input


def predict_logits(checkpoint, frames_THW3, *, batch: int = 8, what: str = "frames") -> np.ndarray:
  """Logits `T, H/4, W/4, C` float32 at the decode head's resolution."""
  frames = check_frames(frames_THW3, what)
  if frames.dtype != np.uint8:
    raise ValueError(f"{what}: expected uint8 frames, got {frames.dtype}")
  variables, cfg, _ = load_model(checkpoint, "segformer")
  check_frame_size(cfg, *frames.shape[1:3], what)
  task = SegTask(cfg)
  fn = jax.jit(lambda x: task.segment(variables, visible_input(normalise(x))))
  out = [np.asarray(fn(frames[i:i + batch])) for i in range(0, len(frames), batch)]
  return np.concatenate(out).astype(np.float32)
