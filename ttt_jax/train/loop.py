"""A resumable training loop: orbax checkpoints every `save_every` steps, a rerun
with the same folder continues from the latest, batches that depend only on
`(seed, step)` so a resumed run sees the ones it would have seen."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import jax
import optax
import orbax.checkpoint as ocp
from flax import struct
from tqdm.auto import tqdm


@struct.dataclass
class TrainState:
  """What a training run checkpoints: parameters, BatchNorm statistics (an empty dict
  for a model without), optimizer state and the step count."""
  params: dict
  batch_stats: dict
  opt_state: optax.OptState
  step: jax.Array


def latest_step(ckpt_dir) -> int:
  """The step of the latest checkpoint under `ckpt_dir` (0 when there is none)."""
  d = Path(ckpt_dir).absolute()
  if not d.is_dir():
    return 0
  with ocp.CheckpointManager(d) as mngr:
    return mngr.latest_step() or 0


def train_loop(state: Any, step_fn: Callable, batch_fn: Callable[[int], tuple], *, steps: int, ckpt_dir,
               seed: int, save_every: int, log_every: int, desc: str = "train", progress: bool = True,
               stop_at: int | None = None) -> tuple[Any, list[dict], float]:
  """Runs `state, metrics = step_fn(state, *batch_fn(step), key)` from the latest
  checkpoint under `ckpt_dir` (or `state`, whose `step` field counts) to `steps`.

  `stop_at` ends after that step with its checkpoint saved, as an interrupted run.
  Returns `(state, log, seconds)`: log holds the metrics every `log_every` steps.
  """
  mngr = ocp.CheckpointManager(Path(ckpt_dir).absolute(), options=ocp.CheckpointManagerOptions(
      max_to_keep=2, save_interval_steps=save_every))
  if mngr.latest_step() is not None:  # resume with an abstract target
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    state = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore(abstract))
  # Restored arrays are committed to their devices, fresh ones are not, and jit lowers
  # the two differently: committing every state (no copy) gives a fresh and a resumed
  # run one program, compiled once (or read from the persistent cache).
  state = jax.tree.map(lambda x: jax.device_put(x, x.sharding) if isinstance(x, jax.Array) else x, state)
  start, log, t0 = int(state.step), [], time.perf_counter()
  with tqdm(total=steps, initial=start, desc=desc, disable=not progress) as bar:
    for s in range(start, min(steps, stop_at or steps)):
      state, m = step_fn(state, *batch_fn(s), jax.random.fold_in(jax.random.key(seed), s))
      if (s + 1) % log_every == 0 or s + 1 == steps:
        m = {k: float(v) for k, v in m.items()}
        log.append({"step": s + 1, **m})
        bar.set_postfix({k: f"{v:.3f}" for k, v in m.items()})
      # An interrupted run (stop_at) keeps its last step even between save intervals.
      mngr.save(s + 1, args=ocp.args.StandardSave(state), force=(s + 1 == stop_at))
      bar.update(1)
  mngr.wait_until_finished()
  mngr.close()
  return state, log, time.perf_counter() - t0
