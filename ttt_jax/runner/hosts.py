"""Several hosts on one run: who takes which item, and waiting for all of them.

Every process runs the same command (`engine.distributed=True`); process i takes
items i, i + P, ...; after all have written their predictions, process 0 scores.
"""
from __future__ import annotations

import jax


def start(distributed: bool) -> None:
  if distributed:
    jax.distributed.initialize()


def mine(index: int) -> bool:
  """Whether this process runs item `index`."""
  return index % jax.process_count() == jax.process_index()


def finish_and_elect() -> bool:
  """Waits for every process's items; True on the process that scores (process 0)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("ttt_jax_items_done")
  return jax.process_index() == 0
