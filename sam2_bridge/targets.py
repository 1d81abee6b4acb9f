"""DiTTA's distillation targets: prompt sampling and bidirectional propagation.

Given a video's warm-up frames and the image model's (ISS) class probabilities on
them, the reference (METHODS.md, DiTTA) builds object masks as follows:

- forward, frame by frame: for each predicted class, in order of peak reliability
  R = 1 - E / max(E) (E the per-pixel entropy), one positive point at the first
  pixel (row-major) reaching that peak; used only if the peak >= `threshold` and,
  after frame 0, not inside the union of the current tracks dilated `dilate` times
  with scipy's default cross (a diamond of radius `dilate`); at most one prompt per
  class per frame and `max_objects` per video. A frame that adds prompts resets the
  propagator, adds the new points, re-seeds the existing objects from their
  propagated masks, then propagation goes on one frame;
- backward: reset, then from the last prompted frame down to frame 0, one frame at a
  time, replaying each frame's prompts the same way (reset, points, re-seed the
  tracked objects from their masks) and propagating in reverse;
- merge per object (ditta/sam2_target.py `_merge`): on frame t an object prompted at
  or before t takes its forward track, any other its backward track.

`zero_shot_targets` is the zero-shot refinement baseline: first-frame prompts
propagated forward through the whole video.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from sam2_bridge import cache_schema


@dataclasses.dataclass(frozen=True, kw_only=True)
class PromptConfig:
  threshold: float = 0.8     # minimum peak reliability of a prompt
  dilate: int = 5            # 3x3 dilations of the current tracks that block new prompts
  max_objects: int = 100


@dataclasses.dataclass(frozen=True)
class Prompt:
  frame: int
  obj_id: int
  x: int
  y: int
  cls: int
  score: float               # the peak reliability that placed it


def reliability(probs_HWC: np.ndarray) -> np.ndarray:
  """R = 1 - E / max(E) over the image; E the entropy of the class probabilities."""
  p = np.clip(probs_HWC.astype(np.float64), 1e-12, 1.0)
  e = -(p * np.log(p)).sum(-1)
  m = e.max()
  return (1.0 - e / m if m > 0 else np.ones_like(e)).astype(np.float32)


def check_probs(frames_shape, probs_THWC, num_prompt_frames: int):
  """Clear errors before propagation: probability count and size against the frames
  (`frames_shape` = the video's `(T, H, W, 3)`)."""
  p = np.asarray(probs_THWC)
  if p.ndim != 4:
    raise ValueError(f"ISS probabilities must be T x H x W x C, got shape {p.shape}")
  if len(p) != num_prompt_frames:
    raise ValueError(f"got ISS probabilities for {len(p)} frames, expected {num_prompt_frames} "
                     f"(the warm-up frames of this {frames_shape[0]}-frame video)")
  if p.shape[1:3] != tuple(frames_shape[1:3]):
    raise ValueError(f"ISS probabilities are {p.shape[1]} x {p.shape[2]}, the frames "
                     f"{frames_shape[1]} x {frames_shape[2]}; export them at frame size")
  if not np.isfinite(p).all():
    raise ValueError("ISS probabilities contain NaN or infinite values")


def check_warmup_probs(frames_shape, probs_WHWC):
  """`check_probs` for DiTTA: probabilities of the first W frames, 1 <= W <= T."""
  w = len(probs_WHWC)
  if not 1 <= w <= frames_shape[0]:
    raise ValueError(f"got ISS probabilities for {w} frames; expected those of the warm-up frames "
                     f"(1 to {frames_shape[0]} of this video)")
  check_probs(frames_shape, probs_WHWC, w)


def sample_prompts(probs_HWC, blocked_HW, frame: int, first_id: int, room: int,
                   cfg: PromptConfig) -> list[Prompt]:
  """At most one prompt per predicted class on one frame (see the module docstring)."""
  rel = reliability(probs_HWC)
  pred = probs_HWC.argmax(-1)
  peaks = []
  for c in np.unique(pred):
    r = np.where(pred == c, rel, -1.0)
    peak = r.max()
    flat = int(np.argmax(r.reshape(-1) >= peak))  # first pixel reaching the peak
    peaks.append((float(peak), int(c), flat))
  out = []
  for peak, c, flat in sorted(peaks, key=lambda t: (-t[0], t[1])):
    if peak < cfg.threshold or len(out) >= room:
      break
    y, x = divmod(flat, pred.shape[1])
    if blocked_HW is not None and blocked_HW[y, x]:
      continue
    out.append(Prompt(frame, first_id + len(out), x, y, c, peak))
  return out


def _hint(probs_HWC, p: Prompt):
  """The connected region of the prompt's class under the point (used by the flow propagator)."""
  import cv2
  region = (probs_HWC.argmax(-1) == p.cls).astype(np.uint8)
  _, comp = cv2.connectedComponents(region, connectivity=8)
  return comp == comp[p.y, p.x]


def _add(prop, p: Prompt, probs_HWC):
  prop.add_points(p.frame, p.obj_id, np.array([[p.x, p.y]], np.float32), np.array([1], np.int32),
                  hint_mask=_hint(probs_HWC, p))


# scipy.ndimage.binary_dilation's default structure: the 4-connected cross.
_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)


def dilate_union(masks, n: int):
  """Union of `masks` dilated `n` times by the 3x3 cross (the reference's
  `binary_dilation(mask, iterations=n)`, i.e. a diamond of radius n), or None."""
  import cv2
  masks = list(masks)
  if not masks:
    return None
  u = np.any(np.stack(masks), 0).astype(np.uint8)
  return cv2.dilate(u, _CROSS, iterations=n).astype(bool) if n > 0 else u.astype(bool)


def _pack(per_frame: list[dict], prompts: list[Prompt], shape_HW, extra: dict) -> dict:
  n = len(prompts)
  masks = np.zeros((len(per_frame), n, *shape_HW), bool)
  for t, d in enumerate(per_frame):
    for o, m in d.items():
      masks[t, o] |= m
  return {
      "masks": masks, "object_ids": np.arange(n, dtype=np.int32),
      "prompt_frames": np.array([p.frame for p in prompts], np.int32),
      "prompt_points": np.array([[p.x, p.y] for p in prompts], np.float32).reshape(n, 2),
      "prompt_classes": np.array([p.cls for p in prompts], np.int32),
      "prompt_scores": np.array([p.score for p in prompts], np.float32), **extra}


def _reseed(prop, t: int, new: list[Prompt], tracked: dict, probs_HWC):
  """The reference's prompt frame: reset, the new points, then the tracked objects'
  masks on frame `t` (SAM2 wants every prompt of a frame before it tracks it)."""
  prop.reset()
  for p in new:
    _add(prop, p, probs_HWC)
  for o, m in tracked.items():
    prop.add_mask(t, o, m)


def _step(prop, t: int, last: bool, reverse: bool):
  """Propagates from frame t by one frame (none if `last`): `(masks on t, masks on the next)`."""
  here, nxt = {}, {}
  for f, ids, masks in prop.propagate(t, reverse=reverse, max_frames=0 if last else 1):
    (here if f == t else nxt).update(zip(ids, masks))
  return here, nxt


def ditta_targets(prop, frames_THWC, probs_WHWC, cfg: PromptConfig = PromptConfig()) -> dict:
  """Object masks of the `W` warm-up frames, `W = len(probs)`; returns cache arrays."""
  frames = np.asarray(frames_THWC)
  check_warmup_probs(frames.shape, probs_WHWC)
  w = len(probs_WHWC)
  t0 = time.perf_counter()
  prop.start(frames[:w])
  prompts: list[Prompt] = []
  fwd = [dict() for _ in range(w)]
  cur: dict[int, np.ndarray] = {}   # the tracks propagated onto the current frame
  for t in range(w):
    new = sample_prompts(probs_WHWC[t], dilate_union(cur.values(), cfg.dilate) if t > 0 else None, t,
                         len(prompts), cfg.max_objects - len(prompts), cfg)
    if new:
      _reseed(prop, t, new, cur, probs_WHWC[t])
      prompts += new
    if not prompts:
      continue
    fwd[t], cur = _step(prop, t, t + 1 == w, reverse=False)
  bwd = [dict() for _ in range(w)]
  if prompts:
    by_frame: dict[int, list[Prompt]] = {}
    for p in prompts:
      by_frame.setdefault(p.frame, []).append(p)
    last = max(by_frame)
    prop.reset()
    cur = {}
    for t in range(last, -1, -1):
      if t in by_frame:
        _reseed(prop, t, by_frame[t], cur, probs_WHWC[t])
      bwd[t], cur = _step(prop, t, t == 0, reverse=True)
  prompted_at = {p.obj_id: p.frame for p in prompts}
  merged = [dict() for _ in range(w)]
  for t in range(w):
    for o, f in prompted_at.items():
      track = fwd[t] if f <= t else bwd[t]
      if o in track:
        merged[t][o] = track[o]
  return _pack(merged, prompts, frames.shape[1:3],
               {"seconds": np.float64(time.perf_counter() - t0)})


def zero_shot_targets(prop, frames_THWC, probs0_HWC, cfg: PromptConfig = PromptConfig()) -> dict:
  """First-frame prompts propagated forward through every frame; returns cache arrays."""
  frames = np.asarray(frames_THWC)
  check_probs(frames.shape, np.asarray(probs0_HWC)[None], 1)
  t0 = time.perf_counter()
  prop.start(frames)
  prompts = sample_prompts(probs0_HWC, None, 0, 0, cfg.max_objects, cfg)
  per = [dict() for _ in range(len(frames))]
  if prompts:
    for p in prompts:
      _add(prop, p, probs0_HWC)
    for f, ids, masks in prop.propagate(0):
      per[f] = dict(zip(ids, masks))
  return _pack(per, prompts, frames.shape[1:3], {"seconds": np.float64(time.perf_counter() - t0)})


MODES = ("ditta", "zero_shot")


def write_targets(path, prop, teacher_digest: str, frames_THWC, probs_WHWC, *, mode: str,
                  cfg: PromptConfig = PromptConfig(), versions: dict | None = None,
                  iss_digest: str | None = None) -> tuple[dict, float]:
  """Builds one video's targets (`mode` 'ditta', or 'zero_shot' from the first frame's
  probabilities) and writes them as a masks cache; returns `(arrays, seconds)`.

  `iss_digest`: weights digest of the model that gave `probs_WHWC` (`ttt-jax export`
  writes it beside them); recorded so that a run with another model refuses the cache.
  """
  if mode not in MODES:
    raise ValueError(f"unknown targets mode {mode!r}; expected one of {MODES}")
  frames = np.asarray(frames_THWC)
  if mode == "ditta":
    arrays = ditta_targets(prop, frames, probs_WHWC, cfg)
  else:
    arrays = zero_shot_targets(prop, frames, probs_WHWC[0], cfg)
  secs = float(arrays.pop("seconds"))
  params = {"mode": mode, "prompts": dataclasses.asdict(cfg), "propagator": prop.params(),
            "num_frames": int(arrays["masks"].shape[0]), "seconds": secs,
            "probs_digest": cache_schema.video_digest(np.asarray(probs_WHWC)), "iss_digest": iss_digest}
  cache_schema.write_cache(path, "masks", arrays, video_digest=cache_schema.video_digest(frames),
                           teacher=prop.name, teacher_digest=teacher_digest, params=params,
                           versions=versions or {})
  return arrays, secs
