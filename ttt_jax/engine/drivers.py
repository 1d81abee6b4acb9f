"""Drivers: run the same step over a video (scan), a live stream, many videos.

All four give bit-identical predictions for the same inputs and seed
(tests/engine/test_drivers.py). Each video gets its own key, derived from the
run's seed and the video's index, so batching never changes its randomness.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from ttt_jax.engine.schedule import Schedule
from ttt_jax.engine.state import TTTState
from ttt_jax.engine.step import Tick

# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------


def check_frames(frames_THWC, name: str = "frames", frame_shape=None) -> np.ndarray:
  """Validates a video array; returns it as numpy. Raises ValueError naming the issue."""
  a = np.asarray(frames_THWC)
  if a.ndim != 4:
    raise ValueError(f"{name}: expected T x H x W x C frames (rank 4), got shape {a.shape}")
  if a.shape[0] == 0:
    raise ValueError(f"{name}: the video is empty (0 frames)")
  if a.shape[-1] != 3:
    raise ValueError(f"{name}: expected 3 colour channels (RGB), got shape {a.shape}")
  if frame_shape is not None and tuple(a.shape[1:]) != tuple(frame_shape):
    raise ValueError(f"{name}: expected frames of shape {tuple(frame_shape)}, got {a.shape[1:]}")
  if a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
    raise ValueError(f"{name}: expected uint8 or float frames, got dtype {a.dtype}")
  if np.issubdtype(a.dtype, np.floating):
    bad = ~np.isfinite(a).reshape(a.shape[0], -1).all(axis=1)
    if bad.any():
      raise ValueError(f"{name}: frame(s) {np.flatnonzero(bad)[:10].tolist()} contain NaN or "
                       "infinite values")
  return a


def ticks_for(frames_THWC: np.ndarray, sched: Schedule) -> Tick:
  """Gathers the frames of a schedule into a Tick of stacked arrays (length L)."""
  return Tick(frame_HWC=frames_THWC[sched.frame_index], push=sched.push,
              adapt=sched.adapt, predict=sched.predict)


def video_key(seed: int, video_index: int) -> jax.Array:
  """The PRNG key of video `video_index` in a run seeded with `seed`."""
  return jax.random.fold_in(jax.random.key(seed), video_index)


# ---------------------------------------------------------------------------
# Drivers
# ---------------------------------------------------------------------------


def scan_driver(step) -> Callable[[TTTState, Tick], tuple[TTTState, dict]]:
  """A whole schedule as one jitted `lax.scan`; the state buffer is donated."""
  return jax.jit(lambda state, ticks: jax.lax.scan(step, state, ticks), donate_argnums=0)


def stream_driver(step) -> Callable[[TTTState, Tick], tuple[TTTState, dict]]:
  """The step jitted alone, to be called once per tick from Python."""
  return jax.jit(step, donate_argnums=0)


def run_stream(jitted_step, state: TTTState, frames: Iterable, *,
               frame_shape=None) -> Iterator[tuple[TTTState, np.ndarray]]:
  """Online modes over any iterator of frames (e.g. a camera).

  Yields `(state, labels_HW)` after each frame; the caller may checkpoint the
  state at any point and resume with the remaining frames.
  """
  on = np.array(True)
  for i, f in enumerate(frames):
    f = check_frames(np.asarray(f)[None], f"frame {i}", frame_shape)[0]
    state, out = jitted_step(state, Tick(frame_HWC=f, push=on, adapt=on, predict=on))
    yield state, np.asarray(out["labels_HW"])


def run_schedule_stream(jitted_step, state: TTTState, ticks: Tick):
  """The stream driver over a precomputed schedule (any mode); returns (state, outs)."""
  outs = []
  for i in range(len(ticks.push)):
    tick = jax.tree.map(lambda x: x[i], ticks)
    state, out = jitted_step(state, tick)
    outs.append(out)
  return state, jax.tree.map(lambda *xs: np.stack(xs), *outs)


def vmap_driver(step, mesh: Mesh | None = None):
  """Many videos at once: `vmap` of the scan over a leading video axis.

  Videos of unequal length are handled by padding their schedules with no-op
  ticks (`Schedule.pad_to`). With `mesh`, the video axis is split over the
  mesh's `'videos'` axis (multi-host: call `jax.distributed.initialize()` first
  and build the mesh over `jax.devices()`).
  """
  run = jax.vmap(lambda state, ticks: jax.lax.scan(step, state, ticks))
  if mesh is None:
    return jax.jit(run, donate_argnums=0)
  # shard_map: each device runs the vmapped scan on its own videos, with no
  # cross-device communication. (Letting the SPMD partitioner split the vmapped
  # program instead gave wrong attention outputs on XLA:CPU, jax 0.10.2.) The
  # body never communicates, so the varying-axes type check is off.
  spec = P("videos")
  return jax.jit(jax.shard_map(run, mesh=mesh, in_specs=(spec, spec), out_specs=spec,
                               check_vma=False),
                 donate_argnums=0)


def video_mesh(devices: Sequence | None = None) -> Mesh:
  """A 1-D mesh named `'videos'` over `devices` (default: all devices)."""
  devs = np.asarray(devices if devices is not None else jax.devices())
  return Mesh(devs.reshape(-1), ("videos",))


def stack_trees(trees):
  """Stacks pytrees along a new leading axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
