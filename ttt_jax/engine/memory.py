"""Explicit memory: a ring buffer of the last k frames, and sampling from it."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class FrameMemory:
  """Ring buffer of the last `k` frames.

  Attributes:
    frames_KHWC: stored frames (uint8 or float), slot `i` valid iff `i < count`.
    count: number of valid slots, int32 scalar in [0, k].
    head: slot the next frame is written to, int32 scalar in [0, k).
  """
  frames_KHWC: jax.Array
  count: jax.Array
  head: jax.Array

  @property
  def capacity(self) -> int:
    return self.frames_KHWC.shape[0]


def empty_memory(k: int, frame_HWC: jax.Array) -> FrameMemory:
  """An empty buffer of `k` slots shaped like `frame_HWC`."""
  if k < 1:
    raise ValueError(f"memory window k must be >= 1, got {k}")
  return FrameMemory(
      frames_KHWC=jnp.zeros((k, *frame_HWC.shape), frame_HWC.dtype),
      count=jnp.zeros((), jnp.int32), head=jnp.zeros((), jnp.int32))


def push(mem: FrameMemory, frame_HWC: jax.Array, enabled=True) -> FrameMemory:
  """Writes `frame_HWC` at `head` (overwriting the oldest) when `enabled`."""
  enabled = jnp.asarray(enabled)
  new = mem.frames_KHWC.at[mem.head].set(frame_HWC.astype(mem.frames_KHWC.dtype))
  k = mem.capacity
  return FrameMemory(
      frames_KHWC=jnp.where(enabled, new, mem.frames_KHWC),
      count=jnp.where(enabled, jnp.minimum(mem.count + 1, k), mem.count),
      head=jnp.where(enabled, (mem.head + 1) % k, mem.head))


SAMPLINGS = ("iid", "balanced")


def sample_indices(mem: FrameMemory, key: jax.Array, batch_size: int, scheme: str = "iid") -> jax.Array:
  """Slots of a batch drawn from the valid slots, int32 `B`.

  'iid': uniform with replacement (the paper's description). 'balanced': the
  reference's sampler: the window is shuffled each tick and read round-robin, so
  every stored frame appears floor(B / count) or ceil(B / count) times and the
  newest frame is always in the batch. With no valid slot both return slot 0.
  """
  if scheme == "iid":
    return jax.random.randint(key, (batch_size,), 0, jnp.maximum(mem.count, 1))
  if scheme != "balanced":
    raise ValueError(f"unknown window sampling {scheme!r}; expected one of {SAMPLINGS}")
  k = mem.capacity
  slots = jnp.arange(k)
  newest = (mem.head - 1) % k
  noise = jax.random.uniform(key, (k,))
  # valid slots in random order, the newest first, invalid ones last
  noise = jnp.where(slots >= mem.count, 2.0, jnp.where(slots == newest, -1.0, noise))
  order = jnp.argsort(noise)
  return order[jnp.arange(batch_size) % jnp.maximum(mem.count, 1)]


def sample(mem: FrameMemory, key: jax.Array, batch_size: int, scheme: str = "iid") -> jax.Array:
  """`batch_size` frames of the window (`sample_indices`), `B, H, W, C`. With no valid
  slot it returns slot 0 (zeros); callers gate the update on `count > 0`."""
  return mem.frames_KHWC[sample_indices(mem, key, batch_size, scheme)]
