"""Memory modes as schedules of ticks over a video's frames.

Every mode is the same step run over a sequence of ticks; a tick names a frame
and whether to push it to memory, adapt, and predict. The last `T` ticks of every
schedule predict frames 0..T-1 in order, so predictions are `outs[-T:]`.

| mode          | runtime settings (hparams)  | ticks                                        |
| ------------- | --------------------------- | -------------------------------------------- |
| none          | (never adapts)              | predict each frame                           |
| reset         | carry_params=False, k=1     | push, adapt, predict each frame              |
| implicit      | carry_params=True,  k=1     | same                                         |
| window        | carry_params=True,  k       | same                                         |
| explicit      | carry_params=False, k       | same (explicit memory only, an ablation)     |
| offline       | carry_params=True,  k=T     | push all; n adapt ticks; predict all, frozen |
| warmup_freeze | carry_params=True,  k       | q passes over the first W frames (push,      |
|               |                             | adapt); predict all, frozen                  |

The settings are runtime values (`mode_settings`), so every mode of a method runs
one compiled program.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

MODES = ("none", "reset", "implicit", "window", "explicit", "offline", "warmup_freeze")
ONLINE_MODES = ("none", "reset", "implicit", "window", "explicit")


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Per-tick frame index and flags (numpy, length L)."""
  frame_index: np.ndarray
  push: np.ndarray
  adapt: np.ndarray
  predict: np.ndarray

  def __len__(self):
    return len(self.frame_index)

  def pad_to(self, length: int) -> "Schedule":
    """Appends no-op ticks (all flags False, frame 0) up to `length`."""
    n = length - len(self)
    if n < 0:
      raise ValueError(f"schedule of {len(self)} ticks cannot be padded to {length}")
    z = np.zeros(n, bool)
    return Schedule(np.concatenate([self.frame_index, np.zeros(n, np.int32)]),
                    np.concatenate([self.push, z]), np.concatenate([self.adapt, z]),
                    np.concatenate([self.predict, z]))


def mode_settings(mode: str, window: int, num_frames: int) -> dict:
  """`carry_params` and the window `k` of a memory mode for a video of `num_frames`."""
  if mode not in MODES:
    raise ValueError(f"unknown memory mode {mode!r}; expected one of {MODES}")
  if mode == "offline":
    return dict(carry_params=True, window=int(num_frames))
  k = int(window) if mode in ("window", "explicit", "warmup_freeze") else 1
  return dict(carry_params=mode not in ("reset", "explicit"), window=k)


def warmup_frames(num_frames: int, fraction: float) -> int:
  """W = max(floor(N * p), 1), DiTTA's warm-up length."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"warm-up fraction must be in (0, 1], got {fraction}")
  return max(int(math.floor(num_frames * fraction)), 1)


def make_schedule(mode: str, num_frames: int, *, offline_iters: int = 0,
                  warmup_fraction: float = 0.1, warmup_passes: int = 1) -> Schedule:
  """The tick schedule of `mode` over a video of `num_frames` frames."""
  t = int(num_frames)
  if t < 1:
    raise ValueError(f"a video needs at least one frame, got {num_frames}")
  idx = np.arange(t, dtype=np.int32)
  on, off = np.ones(t, bool), np.zeros(t, bool)
  if mode in ONLINE_MODES:
    adapt = off if mode == "none" else on
    return Schedule(idx, on.copy(), adapt.copy(), on.copy())
  if mode == "offline":
    if offline_iters < 1:
      raise ValueError(f"offline mode needs offline_iters >= 1, got {offline_iters}")
    n = offline_iters
    return Schedule(
        np.concatenate([idx, np.zeros(n, np.int32), idx]),
        np.concatenate([on, np.zeros(n, bool), off]),
        np.concatenate([off, np.ones(n, bool), off]),
        np.concatenate([off, np.zeros(n, bool), on]))
  if mode == "warmup_freeze":
    if warmup_passes < 1:
      raise ValueError(f"warmup_passes must be >= 1, got {warmup_passes}")
    w = warmup_frames(t, warmup_fraction)
    warm = np.tile(np.arange(w, dtype=np.int32), warmup_passes)
    ones = np.ones(len(warm), bool)
    return Schedule(np.concatenate([warm, idx]), np.concatenate([ones, off]),
                    np.concatenate([ones, off]), np.concatenate([~ones, on]))
  raise ValueError(f"unknown memory mode {mode!r}; expected one of {MODES}")
