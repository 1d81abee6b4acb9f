"""SAM2's video predictor behind the propagator interface (PyTorch; CPU or CUDA).

Measured facts this wraps (../shared/BRIDGE.md):
- the predictor reads JPEG folders only: frames in memory are fed by replacing
  `load_video_frames` for the duration of `init_state`;
- on CPU, upstream casts memory features to bfloat16 (it assumes CUDA autocast) and
  some prompt layouts then fail with a dtype mismatch: a forward pre-hook on
  `memory_attention` casts `memory` and `memory_pos` to float32;
- hole filling needs the optional `sam2._C` extension: `fill_hole_area = 0`;
- `import sam2` owns hydra's global state: build inside a fresh
  `initialize_config_module("sam2")`.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from sam2_bridge.propagators import check_prompt

IMG_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMG_STD = np.array([0.229, 0.224, 0.225], np.float32)


def check_sam2_inputs(config: str, checkpoint: str | None, image_size: int):
  """Clear errors before any long work: config name, checkpoint file, image size."""
  import importlib.resources
  if image_size % 32 or image_size < 64:
    raise ValueError(f"SAM2 image_size must be a multiple of 32 and >= 64, got {image_size}")
  root = importlib.resources.files("sam2")
  if not (root / config).is_file():
    raise FileNotFoundError(f"SAM2 config {config!r} not found in the sam2 package "
                            f"(e.g. 'configs/sam2.1/sam2.1_hiera_t.yaml')")
  if checkpoint is not None:
    p = Path(checkpoint)
    if not p.is_file():
      raise FileNotFoundError(f"SAM2 checkpoint {p} does not exist")
    import torch
    try:
      sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear error
      raise ValueError(f"SAM2 checkpoint {p} is unreadable: {e}") from e
    if not isinstance(sd, dict) or "model" not in sd:
      raise ValueError(f"SAM2 checkpoint {p}: expected a dict with key 'model' (as released)")


def build_predictor(config: str, checkpoint: str | None, *, image_size: int = 1024,
                    device: str = "cpu", seed: int = 0):
  """The video predictor; `checkpoint=None` gives reproducible random weights (tests)."""
  check_sam2_inputs(config, checkpoint, image_size)
  import torch
  from hydra import initialize_config_module
  from hydra.core.global_hydra import GlobalHydra
  from sam2.build_sam import build_sam2_video_predictor
  GlobalHydra.instance().clear()
  torch.manual_seed(seed)
  with initialize_config_module("sam2", version_base="1.2"):
    pred = build_sam2_video_predictor(config, ckpt_path=checkpoint, device=device,
                                      hydra_overrides_extra=[f"++model.image_size={image_size}"])
  GlobalHydra.instance().clear()
  if device == "cpu":
    pred.fill_hole_area = 0

    def to_float32(_module, args, kwargs):
      for k in ("memory", "memory_pos"):
        if k in kwargs and kwargs[k] is not None:
          kwargs[k] = kwargs[k].float()
      return args, kwargs
    pred.memory_attention.register_forward_pre_hook(to_float32, with_kwargs=True)
  return pred


class _Quiet:
  """tqdm stand-in: the predictor opens a progress bar per call."""

  def __init__(self, it=None, *a, **k):
    self.it = it

  def __iter__(self):
    return iter(self.it)


@contextlib.contextmanager
def _frames_in_memory(frames_THWC, image_size):
  import cv2
  import torch
  import sam2.sam2_video_predictor as svp
  x = np.stack([cv2.resize(f, (image_size, image_size), interpolation=cv2.INTER_LINEAR)
                for f in frames_THWC]).astype(np.float32) / 255.0
  x = torch.from_numpy(((x - IMG_MEAN) / IMG_STD).transpose(0, 3, 1, 2).copy())
  h, w = frames_THWC.shape[1:3]
  saved = svp.load_video_frames, svp.tqdm
  svp.load_video_frames = lambda **kw: (x.to(kw.get("compute_device", "cpu")), h, w)
  svp.tqdm = _Quiet
  try:
    yield
  finally:
    svp.load_video_frames, svp.tqdm = saved


class SAM2Propagator:
  """`Propagator` over SAM2's video predictor. `hint_mask` is ignored (SAM2 segments
  from the point itself)."""

  def __init__(self, config: str, checkpoint: str | None, *, image_size: int = 1024,
               device: str = "cpu", seed: int = 0):
    self.config, self.checkpoint, self.image_size = config, checkpoint, image_size
    self.name = f"sam2:{Path(config).stem}"
    self.predictor = build_predictor(config, checkpoint, image_size=image_size, device=device, seed=seed)
    self.frames = None

  def params(self) -> dict:
    return {"config": self.config, "image_size": self.image_size,
            "checkpoint": None if self.checkpoint is None else str(self.checkpoint)}

  def start(self, frames_THWC):
    self.frames = np.asarray(frames_THWC)
    with _frames_in_memory(self.frames, self.image_size):
      self.state = self.predictor.init_state(video_path="<in memory>")

  def reset(self):
    self.predictor.reset_state(self.state)

  def add_points(self, frame_idx, obj_id, points_xy, labels, hint_mask=None):
    check_prompt(self.frames, frame_idx, points_xy)
    self.predictor.add_new_points_or_box(
        inference_state=self.state, frame_idx=int(frame_idx), obj_id=obj_id,
        points=np.asarray(points_xy, np.float32).reshape(-1, 2),
        labels=np.asarray(labels, np.int32).reshape(-1))

  def add_mask(self, frame_idx, obj_id, mask_HW):
    check_prompt(self.frames, frame_idx, mask_HW=mask_HW)
    self.predictor.add_new_mask(inference_state=self.state, frame_idx=int(frame_idx), obj_id=obj_id,
                                mask=np.asarray(mask_HW, bool))

  def propagate(self, start_frame, *, reverse=False, max_frames=None):
    import sam2.sam2_video_predictor as svp
    saved = svp.tqdm
    svp.tqdm = _Quiet
    try:
      for t, ids, logits in self.predictor.propagate_in_video(
          self.state, start_frame_idx=int(start_frame), max_frame_num_to_track=max_frames,
          reverse=reverse):
        yield t, list(ids), (logits[:, 0] > 0).cpu().numpy()
    finally:
      svp.tqdm = saved
