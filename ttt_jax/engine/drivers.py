"""Drivers: run the same step over a video (scan), a live stream, many videos.

All four give bit-identical predictions for the same inputs and seed
(tests/engine/test_drivers.py). Each video gets its own key, derived from the
run's seed and the video's index, so batching never changes its randomness.
Drivers take tick data as it comes: validating it is the job of the data side
that made it (a method's `make_ticks`).
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


def ticks_for(data_T, sched: Schedule) -> Tick:
  """Gathers per-frame tick data (leaves with a leading frame axis `T`) into the
  schedule's ticks (length L)."""
  return Tick(data=jax.tree.map(lambda x: np.asarray(x)[sched.frame_index], data_T), push=sched.push,
              adapt=sched.adapt, predict=sched.predict)


def video_key(seed: int, video_index: int) -> jax.Array:
  """The PRNG key of video `video_index` in a run seeded with `seed`."""
  return jax.random.fold_in(jax.random.key(seed), video_index)


def chunks(ticks: Tick, size: int, axis: int = 0) -> Iterator[Tick]:
  """Splits ticks into chunks of `size` along `axis` (the schedule must be padded to
  a multiple of `size`, `Schedule.pad_to`): one compiled scan runs any length."""
  n = ticks.push.shape[axis]
  if size <= 0 or n % size:
    raise ValueError(f"{n} ticks do not split into chunks of {size}; pad the schedule first")
  for i in range(0, n, size):
    yield jax.tree.map(lambda x: np.take(np.asarray(x), np.arange(i, i + size), axis=axis), ticks)


# ---------------------------------------------------------------------------
# Drivers
# ---------------------------------------------------------------------------


def scan_driver(step) -> Callable[[TTTState, Tick], tuple[TTTState, dict]]:
  """A run of ticks as one jitted `lax.scan`; the state buffer is donated."""
  return jax.jit(lambda state, ticks: jax.lax.scan(step, state, ticks), donate_argnums=0)


def stream_driver(step) -> Callable[[TTTState, Tick], tuple[TTTState, dict]]:
  """The step jitted alone, to be called once per tick from Python."""
  return jax.jit(step, donate_argnums=0)


def run_stream(jitted_step, state: TTTState, items: Iterable) -> Iterator[tuple[TTTState, np.ndarray]]:
  """Online modes over any iterator of tick data (e.g. frames from a camera, each
  validated by whoever made it).

  Yields `(state, labels)` after each item; the caller may checkpoint the state at
  any point and resume with the remaining items.
  """
  on = np.array(True)
  for item in items:
    state, out = jitted_step(state, Tick(data=item, push=on, adapt=on, predict=on))
    yield state, np.asarray(out["labels"])


def run_schedule_stream(jitted_step, state: TTTState, ticks: Tick):
  """The stream driver over a precomputed schedule (any mode); returns (state, outs)."""
  outs = []
  for i in range(len(ticks.push)):
    tick = jax.tree.map(lambda x: x[i], ticks)
    state, out = jitted_step(state, tick)
    outs.append(out)
  return state, jax.tree.map(lambda *xs: np.stack(xs), *outs)


BATCHINGS = ("vmap", "map")


def vmap_driver(step, mesh: Mesh | None = None, batching: str = "vmap"):
  """Many videos at once over a leading video axis.

  `batching='vmap'` vectorises the scan over the videos; `'map'` runs a device's
  videos one after another inside one program (`lax.map`), each exactly as the
  scan driver would. XLA batches some ops into kernels that round differently
  (DiTTA's train-mode passes: a few pixels in a thousand flip), so methods whose
  predictions must match the scan driver bit for bit there use 'map'.

  Videos of unequal length are handled by padding their schedules with no-op
  ticks (`Schedule.pad_to`). With `mesh`, the video axis is split over the
  mesh's `'videos'` axis (multi-host: call `jax.distributed.initialize()` first
  and build the mesh over `jax.devices()`).
  """
  if batching not in BATCHINGS:
    raise ValueError(f"batching must be one of {BATCHINGS}, got {batching!r}")
  one = lambda state, ticks: jax.lax.scan(step, state, ticks)
  run = jax.vmap(one) if batching == "vmap" else (lambda states, ticks: jax.lax.map(lambda a: one(*a), (states, ticks)))
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
