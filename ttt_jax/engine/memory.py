"""Explicit memory: a ring buffer of the last ticks' data (any pytree), and sampling.

The buffer has a static number of slots; the window a batch is drawn from is a
runtime value up to that size, so runs with different windows share one program.
A window of `w` slots behaves exactly as a ring buffer of capacity `w` would
(same draws, same frames), whatever the buffer's size.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

PyTree = Any


@struct.dataclass
class TickMemory:
  """Ring buffer of the last `k` pushed items.

  Attributes:
    items: a pytree whose leaves have a leading axis of `k` slots; slot `i` holds
      the item of push number `p` with `p % k == i`.
    count: number of valid slots, int32 scalar in [0, k].
    head: slot the next item is written to, int32 scalar in [0, k).
    total: items pushed so far, int32 scalar.
  """
  items: PyTree
  count: jax.Array
  head: jax.Array
  total: jax.Array

  @property
  def capacity(self) -> int:
    return jax.tree.leaves(self.items)[0].shape[0]


def empty_memory(k: int, example: PyTree) -> TickMemory:
  """An empty buffer of `k` slots, each shaped like `example` (one tick's data)."""
  if k < 1:
    raise ValueError(f"memory slots k must be >= 1, got {k}")
  items = jax.tree.map(lambda x: jnp.zeros((k, *jnp.shape(x)), jnp.result_type(x)), example)
  z = lambda: jnp.zeros((), jnp.int32)  # three buffers: the drivers donate each
  return TickMemory(items=items, count=z(), head=z(), total=z())


def push(mem: TickMemory, item: PyTree, enabled=True) -> TickMemory:
  """Writes `item` at `head` (overwriting the oldest) when `enabled`."""
  enabled = jnp.asarray(enabled)
  k = mem.capacity

  def write(buf, x):
    # Only the slot is rewritten (not the whole buffer), so a large buffer costs nothing per tick.
    return buf.at[mem.head].set(jnp.where(enabled, jnp.asarray(x, buf.dtype), buf[mem.head]))
  return TickMemory(
      items=jax.tree.map(write, mem.items, item),
      count=jnp.where(enabled, jnp.minimum(mem.count + 1, k), mem.count),
      head=jnp.where(enabled, (mem.head + 1) % k, mem.head),
      total=mem.total + enabled.astype(jnp.int32))


SAMPLINGS = ("iid", "balanced")


def _window_slots(mem: TickMemory, window):
  """(valid, slot_of): the number of items in the window of the last `window`
  pushes, and a map from a position of a ring buffer of `window` slots to this
  buffer's slot holding the same item."""
  k = mem.capacity
  w = jnp.minimum(jnp.asarray(k if window is None else window, jnp.int32), k)
  n = mem.total
  valid = jnp.maximum(jnp.minimum(n, w), 1)
  # position j of a w-slot ring holds push number p = n - valid + ((j - n + valid) mod valid)
  slot_of = lambda j: (n - valid + jnp.mod(j - n + valid, valid)) % k
  return valid, w, slot_of


def sample_indices(mem: TickMemory, key: jax.Array, batch_size: int, scheme: str = "iid",
                   window=None) -> jax.Array:
  """Slots of a batch drawn from the last `window` items (default: all slots), int32 `B`.

  'iid': uniform with replacement (the paper's description). 'balanced': the
  reference's sampler: the window is shuffled each tick and read round-robin, so
  every item appears floor(B / count) or ceil(B / count) times and the newest item
  is always in the batch. With no valid slot both return slot 0.
  """
  valid, w, slot_of = _window_slots(mem, window)
  if scheme == "iid":
    return slot_of(jax.random.randint(key, (batch_size,), 0, valid))
  if scheme != "balanced":
    raise ValueError(f"unknown window sampling {scheme!r}; expected one of {SAMPLINGS}")
  k = mem.capacity
  pos = jnp.arange(k)
  newest = (mem.total - 1) % w
  noise = jax.random.uniform(key, (k,))
  # valid positions in random order, the newest first, invalid ones last
  noise = jnp.where(pos >= jnp.minimum(mem.total, w), 2.0, jnp.where(pos == newest, -1.0, noise))
  order = jnp.argsort(noise)
  return slot_of(order[jnp.arange(batch_size) % valid])


def sample(mem: TickMemory, key: jax.Array, batch_size: int, scheme: str = "iid", window=None) -> PyTree:
  """`batch_size` items of the window (`sample_indices`), each leaf `B, ...`. With no
  valid slot it returns slot 0 (zeros); callers gate the update on `count > 0`."""
  idx = sample_indices(mem, key, batch_size, scheme, window)
  return jax.tree.map(lambda x: x[idx], mem.items)
