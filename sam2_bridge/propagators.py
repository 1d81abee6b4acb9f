"""The propagator interface, and the classical optical-flow propagator.

A propagator tracks object masks through a video, with the calls of SAM2's video
predictor (see `sam2_propagator.py` for the real one):

    prop.start(frames_THWC)                         # uint8 RGB
    prop.add_points(t, obj_id, points_xy, labels, hint_mask=None)
    prop.add_mask(t, obj_id, mask_HW)
    for t, obj_ids, masks_NHW in prop.propagate(start, reverse=False, max_frames=None): ...
    prop.reset()                                    # forget every object and prompt

`propagate` yields the start frame and then up to `max_frames` further frames
(SAM2's `max_frame_num_to_track`), in order (descending when `reverse`).

`FlowPropagator` needs no weights: a point prompt becomes a mask (the `hint_mask`
the caller gives, e.g. the image model's connected region under the point, else a
colour flood fill from the point), and masks move from frame to frame by dense
Farneback optical flow (OpenCV), warped backward so every pixel gets a value.
"""
from __future__ import annotations

import hashlib
import json
from typing import Iterator, Protocol

import numpy as np


class Propagator(Protocol):
  name: str

  def start(self, frames_THWC: np.ndarray) -> None: ...
  def reset(self) -> None: ...
  def add_points(self, frame_idx: int, obj_id: int, points_xy: np.ndarray, labels: np.ndarray,
                 hint_mask: np.ndarray | None = None) -> None: ...
  def add_mask(self, frame_idx: int, obj_id: int, mask_HW: np.ndarray) -> None: ...
  def propagate(self, start_frame: int, *, reverse: bool = False,
                max_frames: int | None = None) -> Iterator[tuple[int, list, np.ndarray]]: ...


def check_prompt(frames_THWC, frame_idx: int, points_xy=None, mask_HW=None):
  """Clear errors for prompts outside the video."""
  t, h, w = frames_THWC.shape[:3]
  if not 0 <= frame_idx < t:
    raise ValueError(f"prompt frame {frame_idx} is outside the video's {t} frames")
  if points_xy is not None:
    p = np.asarray(points_xy, np.float32).reshape(-1, 2)
    if ((p < 0) | (p >= [w, h])).any():
      raise ValueError(f"prompt points {p.tolist()} fall outside the {w} x {h} frame")
  if mask_HW is not None and np.shape(mask_HW) != (h, w):
    raise ValueError(f"prompt mask has shape {np.shape(mask_HW)}, the frames are {h} x {w}")


def frame_order(num_frames: int, start_frame: int, reverse: bool, max_frames: int | None) -> range:
  """The frames `propagate` visits: the start, then up to `max_frames` more (all if None),
  descending when `reverse` (SAM2's `max_frame_num_to_track`)."""
  n = num_frames if max_frames is None else max_frames
  if reverse:
    return range(start_frame, max(start_frame - n, 0) - 1, -1)
  return range(start_frame, min(start_frame + n, num_frames - 1) + 1)


def check_ready(frames, objects):
  if frames is None:
    raise RuntimeError("call start(frames) before propagate")
  if not objects:
    raise RuntimeError("no objects to propagate: add a prompt first")


class FlowPropagator:
  """Masks carried by dense optical flow (Farneback), one frame at a time.

  Args:
    flood_tolerance: colour tolerance (0..255 per channel) of the flood fill that
      turns a point into a mask when no `hint_mask` is given.
  """
  name = "flow"

  def __init__(self, *, flood_tolerance: int = 12, pyr_scale: float = 0.5, levels: int = 3,
               winsize: int = 9, iterations: int = 3):
    self.flood_tolerance = flood_tolerance
    self._flow_args = (pyr_scale, levels, winsize, iterations, 5, 1.1, 0)
    self.frames = None
    self._flows = {}

  def params(self) -> dict:
    return {"flood_tolerance": self.flood_tolerance, "farneback": list(self._flow_args)}

  def teacher_digest(self) -> str:
    """Stands in for a checkpoint digest: sha256 of the flow settings."""
    return hashlib.sha256(json.dumps(self.params(), sort_keys=True).encode()).hexdigest()

  def start(self, frames_THWC):
    import cv2
    self.frames = np.asarray(frames_THWC)
    self._gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in self.frames]
    self._flows = {}
    self.reset()

  def reset(self):
    self._masks = {}      # obj_id -> {frame: bool HxW}
    self._prompted = {}   # obj_id -> {frame: bool HxW} (prompt masks win over propagation)

  def _point_mask(self, frame_idx, xy):
    import cv2
    img = self.frames[frame_idx]
    h, w = img.shape[:2]
    m = np.zeros((h + 2, w + 2), np.uint8)
    tol = (self.flood_tolerance,) * 3
    cv2.floodFill(img.copy(), m, (int(xy[0]), int(xy[1])), (0, 0, 0), tol, tol,
                  4 | cv2.FLOODFILL_MASK_ONLY | (255 << 8))
    return m[1:-1, 1:-1] > 0

  def add_points(self, frame_idx, obj_id, points_xy, labels, hint_mask=None):
    check_prompt(self.frames, frame_idx, points_xy, hint_mask)
    pts = np.asarray(points_xy, np.float32).reshape(-1, 2)
    lab = np.asarray(labels).reshape(-1)
    if hint_mask is not None:
      mask = np.asarray(hint_mask, bool).copy()
    else:
      mask = np.zeros(self.frames.shape[1:3], bool)
      for p, l in zip(pts, lab):
        if l > 0:
          mask |= self._point_mask(frame_idx, p)
    for p, l in zip(pts, lab):
      if l <= 0:
        mask &= ~self._point_mask(frame_idx, p)
    self.add_mask(frame_idx, obj_id, mask)

  def add_mask(self, frame_idx, obj_id, mask_HW):
    check_prompt(self.frames, frame_idx, mask_HW=mask_HW)
    m = np.asarray(mask_HW, bool)
    self._prompted.setdefault(obj_id, {})[frame_idx] = m
    self._masks.setdefault(obj_id, {})[frame_idx] = m

  def _warp(self, mask, src, dst):
    """`mask` on frame `src` moved onto frame `dst` (adjacent frames)."""
    import cv2
    if (dst, src) not in self._flows:  # flow from dst to src: where each dst pixel came from
      self._flows[(dst, src)] = cv2.calcOpticalFlowFarneback(
          self._gray[dst], self._gray[src], None, *self._flow_args)
    flow = self._flows[(dst, src)]
    h, w = mask.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = cv2.remap(mask.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1],
                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out >= 0.5

  def propagate(self, start_frame, *, reverse=False, max_frames=None):
    check_ready(self.frames, self._masks)
    ids = list(self._masks)
    prev = None
    for f in frame_order(len(self.frames), start_frame, reverse, max_frames):
      masks = []
      for o in ids:
        per = self._masks[o]
        if f in self._prompted[o]:
          m = self._prompted[o][f]
        elif prev is not None and prev[0] in per:
          m = self._warp(per[prev[0]], prev[0], f)
        elif f in per:
          m = per[f]
        else:
          m = np.zeros(self.frames.shape[1:3], bool)
        per[f] = m
        masks.append(m)
      prev = (f,)
      yield f, ids, np.stack(masks)


class OraclePropagator:
  """A perfect SAM2 for the synthetic benchmark: never a default, only to tell a
  method's faults from its teacher's.

  The object under a point prompt is the generator's instance there (a region of
  the scene, or one moving car or person), and its mask on every frame is where
  that instance is (`instances_THW`, written by `ttt-jax export` for synthetic
  videos as `instances.npy`). A mask prompt keeps the instance most of it covers.
  Classes still come from the image model's scores: the oracle only segments.
  Every cache and table built with it says "oracle".
  """
  name = "oracle"

  def __init__(self, instances_THW: np.ndarray):
    self.instances = np.asarray(instances_THW)
    if self.instances.ndim != 3:
      raise ValueError(f"oracle instances must be T x H x W, got shape {self.instances.shape}")
    self.frames = None

  def params(self) -> dict:
    return {"oracle": "generator instances", "instances_digest": hashlib.sha256(
        np.ascontiguousarray(self.instances).tobytes()).hexdigest()}

  def teacher_digest(self) -> str:
    return hashlib.sha256(json.dumps(self.params(), sort_keys=True).encode()).hexdigest()

  def start(self, frames_THWC):
    self.frames = np.asarray(frames_THWC)
    if self.instances.shape[0] < len(self.frames) or self.instances.shape[1:] != self.frames.shape[1:3]:
      raise ValueError(f"oracle instances {self.instances.shape} do not cover the frames "
                       f"{self.frames.shape[:3]}")
    self.reset()

  def reset(self):
    self._objects = {}   # obj_id -> instance id (0: none)

  def add_points(self, frame_idx, obj_id, points_xy, labels, hint_mask=None):
    check_prompt(self.frames, frame_idx, points_xy)
    pos = [p for p, l in zip(np.asarray(points_xy).reshape(-1, 2), np.asarray(labels).reshape(-1)) if l > 0]
    x, y = (int(v) for v in pos[0]) if pos else (0, 0)
    self._objects[obj_id] = int(self.instances[frame_idx, y, x]) if pos else -1

  def add_mask(self, frame_idx, obj_id, mask_HW):
    check_prompt(self.frames, frame_idx, mask_HW=mask_HW)
    ids = self.instances[frame_idx][np.asarray(mask_HW, bool)]
    self._objects[obj_id] = int(np.bincount(ids - ids.min()).argmax() + ids.min()) if ids.size else -1

  def propagate(self, start_frame, *, reverse=False, max_frames=None):
    check_ready(self.frames, self._objects)
    ids = list(self._objects)
    for f in frame_order(len(self.frames), start_frame, reverse, max_frames):
      yield f, ids, np.stack([self.instances[f] == self._objects[o] for o in ids])
