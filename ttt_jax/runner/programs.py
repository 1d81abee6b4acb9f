"""`Runner`: one plan's compiled programs, and items run through them by any driver.

Programs are compiled ahead of time once per (driver, input shapes) and timed
apart from the runs. Runs of plans with the same static settings and shapes
lower to the same program, which the persistent compilation cache
(`ttt_jax.compile_cache`) then compiles once per machine.
"""
from __future__ import annotations

import time

import jax
import numpy as np

from ttt_jax.engine import drivers
from ttt_jax.engine.step import Tick, init_state, make_step
from ttt_jax.methods.base import Plan
from ttt_jax.metrics.drift import layer_group_drift

DRIVERS = ("scan", "stream", "vmap", "sharded")


class ProgramCache:
  """Compiled programs shared by the runners of plans with the same program key
  (`Plan.program_key`), e.g. the demo's runs of one method kind in several modes:
  they compile (and trace) once per process."""

  def __init__(self):
    self._entries = {}

  def __len__(self) -> int:
    """The number of distinct programs (keys) held."""
    return len(self._entries)

  def entry(self, plan: Plan) -> dict:
    key = plan.program_key or f"unshared-{id(plan)}"
    if key not in self._entries:
      step = make_step(plan.learner, plan.step_config)
      self._entries[key] = {"step": step, "compiled": {},
                            "jitted": {"scan": drivers.scan_driver(step), "stream": drivers.stream_driver(step)}}
    return self._entries[key]


class Runner:
  """Runs items (videos) of one plan.

  Args:
    plan: the method's plan.
    seed: the run's seed; item `i` gets `drivers.video_key(seed, i)`.
    scan_chunk: ticks per compiled scan call (0 = one call per schedule); with a
      chunk, one program serves every schedule length.
    programs: compiled programs to share with other runners (default: this
      runner's own).
    batching: how `run_many` batches videos ('vmap' or 'map', `drivers.vmap_driver`).
  """

  def __init__(self, plan: Plan, *, seed: int = 0, scan_chunk: int = 16,
               programs: ProgramCache | None = None, batching: str = "vmap"):
    self.plan = plan
    self.batching = batching
    self.seed = seed
    self.scan_chunk = scan_chunk
    entry = (programs if programs is not None else ProgramCache()).entry(plan)
    self._step, self._jitted, self._compiled = entry["step"], entry["jitted"], entry["compiled"]
    self.compile_seconds = 0.0

  def _program(self, name: str, fn, *args):
    """AOT-compiles `fn` once per input shape, timing compilation separately."""
    key = (name, str(jax.tree.map(lambda x: (np.shape(x), str(getattr(x, "dtype", type(x)))), args)))
    if key not in self._compiled:
      t0 = time.perf_counter()
      self._compiled[key] = fn.lower(*args).compile()
      self.compile_seconds += time.perf_counter() - t0
    return self._compiled[key]

  def state_for(self, data_T, num_frames: int, index: int):
    """The initial state of item `index` whose tick data is `data_T`."""
    v = self.plan.variables
    example = jax.tree.map(lambda x: np.asarray(x)[0], data_T)
    return init_state(self.plan.learner, self.plan.step_config, trainable=v.trainable, stats=v.stats,
                      frozen=v.frozen, method_state=v.method_state, hparams=self.plan.hparams(num_frames),
                      example=example, key=drivers.video_key(self.seed, index))

  def start(self, item_id: str, inputs, index: int):
    """`(state, data_T)`: item `index`'s tick data (validated) and initial state."""
    data = self.plan.make_ticks(item_id, inputs)
    return self.state_for(data, len(jax.tree.leaves(data)[0]), index), data

  def _ticks(self, data_T, num_frames: int, length: int | None = None):
    sched = self.plan.schedule(num_frames)
    n = length or len(sched)
    if self.scan_chunk:
      n = -(-n // self.scan_chunk) * self.scan_chunk
    return sched, drivers.ticks_for(data_T, sched.pad_to(n))

  @staticmethod
  def _stats(state, i=None):
    """Skipped updates, resets and parameter drift of one item (`i`: its row of a batch)."""
    pick = lambda t: jax.tree.map(lambda x: np.asarray(x) if i is None else np.asarray(x)[i], t)
    return {"skipped": int(pick(state.skipped)), "resets": int(pick(state.resets)),
            "drift": layer_group_drift(pick(state.trainable), pick(state.anchor))}

  def _prepare(self, item_id: str, inputs, index: int, driver: str):
    if driver not in ("scan", "stream"):
      raise ValueError(f"run_one drives scan or stream, got {driver!r}")
    data = self.plan.make_ticks(item_id, inputs)
    t = len(jax.tree.leaves(data)[0])
    sched, ticks = self._ticks(data, t)
    return sched, ticks, self.state_for(data, t, index)

  def _scan_chunks(self, ticks):
    return drivers.chunks(ticks, self.scan_chunk or len(ticks.push))

  def _first_program(self, driver, state, ticks):
    if driver == "stream":
      return self._program("stream", self._jitted["stream"], state, jax.tree.map(lambda x: x[0], ticks))
    return self._program("scan", self._jitted["scan"], state, next(self._scan_chunks(ticks)))

  def precompile(self, item_id: str, inputs, index: int = 0, driver: str = "scan") -> float:
    """Compiles the program `run_one` would run on this item, without running it;
    returns the seconds spent. XLA compiles without holding the GIL, so the
    programs of several plans can compile at once in threads (as the demo does)."""
    before = self.compile_seconds
    _, ticks, state = self._prepare(item_id, inputs, index, driver)
    self._first_program(driver, state, ticks)
    return self.compile_seconds - before

  def run_one(self, item_id: str, inputs, index: int, driver: str = "scan"):
    """`(labels, stats)` of one item: the predictions of its frames in order (`T, ...`);
    stats: skipped updates, resets, parameter drift, and each tick's loss and
    whether it adapted."""
    sched, ticks, state = self._prepare(item_id, inputs, index, driver)
    if driver == "stream":
      step = self._first_program(driver, state, ticks)
      state, outs = drivers.run_schedule_stream(step, state, ticks)
    else:
      parts = []
      for chunk in self._scan_chunks(ticks):
        state, o = self._program("scan", self._jitted["scan"], state, chunk)(state, chunk)
        parts.append(jax.tree.map(np.asarray, o))
      outs = jax.tree.map(lambda *xs: np.concatenate(xs), *parts)
    n = len(sched)
    stats = {**self._stats(state), "loss": np.asarray(outs["loss"])[:n], "adapted": np.asarray(outs["adapted"])[:n]}
    return np.asarray(outs["labels"])[np.flatnonzero(sched.predict)], stats

  def stream(self, frames, index: int = 0, item_id: str = "live"):
    """Online TTT over frames that arrive one at a time (a camera, a socket, a
    generator): yields `(labels, loss)` of each frame as soon as it is done, the
    same step as `run_one(driver='stream')` on the whole video. Only modes whose
    every tick pushes, predicts and either always or never adapts (the online
    modes) can run on a stream of unknown length.

    Args:
      frames: an iterable of `H, W, 3` frames (uint8 or float), validated one by one.
      index: the item's index (its PRNG stream, as in `run_one`).
    """
    sched = self.plan.schedule(2)
    if not (sched.push.all() and sched.predict.all() and len(set(sched.adapt.tolist())) == 1
            and list(sched.frame_index) == [0, 1]):
      raise ValueError("stream() runs online memory modes only (none, reset, implicit, window, "
                       "explicit); this method's schedule needs the whole video first")
    step, state = None, None
    first = None
    for t, frame in enumerate(frames):
      frame = np.asarray(frame)
      if first is not None and frame.shape != first:
        raise ValueError(f"{item_id} frame {t}: shape {frame.shape}, but the stream started with "
                         f"{first}; a stream's frames must share one size")
      first = frame.shape
      data = self.plan.make_ticks(f"{item_id} frame {t}", frame[None])
      tick = Tick(data=jax.tree.map(lambda x: np.asarray(x)[0], data),
                  push=np.array(True), adapt=np.array(bool(sched.adapt[0])), predict=np.array(True))
      if state is None:
        state = self.state_for(data, 1, index)
        step = self._program("stream", self._jitted["stream"], state, tick)
      state, out = step(state, tick)
      yield np.asarray(out["labels"]), float(out["loss"])

  def run_many(self, items, indices, mesh=None):
    """Many items at once (vmap; sharded over `mesh`). Unequal lengths are padded.

    Args:
      items: `(item_id, inputs)` pairs.
      indices: each item's index in the dataset (its PRNG stream).
    Returns: `(labels, stats)` per item.
    """
    datas = [self.plan.make_ticks(i, x) for i, x in items]
    lens = [len(jax.tree.leaves(d)[0]) for d in datas]
    longest = max(len(self.plan.schedule(t)) for t in lens)
    built = [self._ticks(d, t, longest) for d, t in zip(datas, lens)]
    ticks = drivers.stack_trees([tk for _, tk in built])
    states = drivers.stack_trees([self.state_for(d, t, i) for d, t, i in zip(datas, lens, indices)])
    name = (self.batching, mesh)
    if name not in self._jitted:
      self._jitted[name] = drivers.vmap_driver(self._step, mesh, self.batching)
    if mesh is not None:  # each device gets its videos' rows
      put = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("videos"))
      states = jax.device_put(states, put)
    size = self.scan_chunk or ticks.push.shape[1]
    parts = []
    for chunk in drivers.chunks(ticks, size, axis=1):
      if mesh is not None:
        chunk = jax.device_put(chunk, put)
      states, outs = self._program(name, self._jitted[name], states, chunk)(states, chunk)
      parts.append((np.asarray(outs["labels"]), np.asarray(outs["loss"])))
    lab = np.concatenate([p[0] for p in parts], axis=1)
    loss = np.concatenate([p[1] for p in parts], axis=1)
    return [(lab[i][np.flatnonzero(s.predict)], {**self._stats(states, i), "loss": loss[i][:len(s)]})
            for i, (s, _) in enumerate(built)]
