"""Run a video method over a dataset with any driver; write results and predictions.

Outputs (`out_dir`):
    results.json                 method, dataset, resolved config, versions, frames,
                                 frames/s, miou, wiou, mvc8, mvc16, per-video metrics,
                                 skipped (non-finite) updates
    predictions/<video_id>.npz   labels (T x H x W, integer), seconds, skipped, resets

Each video's predictions are written atomically as soon as it finishes; a rerun
with the same `out_dir` skips finished videos (resume after a kill).
"""
from __future__ import annotations

import itertools
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from sam2_bridge.cache_schema import library_versions
from ttt_jax.data.datasets import load_videos
from ttt_jax.engine import drivers
from ttt_jax.engine.schedule import make_schedule, warmup_frames
from ttt_jax.engine.state import split_params
from ttt_jax.engine.step import init_state, make_step
from ttt_jax.methods import ditta, video_ttt
from ttt_jax.methods.model_source import load_source_model
from ttt_jax.metrics.drift import layer_group_drift
from ttt_jax.methods.segformer_task import SegTask, check_frame_size
from ttt_jax.metrics.segmentation import Accumulator

_VERSIONED = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "numpy", "ttt-jax")


def versions() -> dict:
  return {"python": platform.python_version(), **library_versions(_VERSIONED)}


def atomic_write_bytes(path: Path, data: bytes) -> None:
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  tmp.write_bytes(data)
  os.replace(tmp, path)


def write_json(path, obj) -> Path:
  """Writes `obj` as indented JSON, atomically, creating parent folders."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  atomic_write_bytes(path, json.dumps(obj, indent=1, default=bool).encode())
  return path


def save_npz_atomic(path: Path, **arrays) -> None:
  tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
  np.savez_compressed(tmp, **arrays)
  os.replace(tmp, path)


def eval_start(m, num_frames: int) -> int:
  """First scored frame: after the warm-up under DiTTA's protocol, else 0."""
  if not m.eval_after_warmup:
    return 0
  w = warmup_frames(num_frames, m.warmup_fraction)
  if w >= num_frames:
    raise ValueError(f"a warm-up of {w} frames leaves none of the {num_frames} to evaluate")
  return w


class VideoRunner:
  """Holds the jitted drivers of one (method, model) pair; runs videos through them."""

  def __init__(self, config, variables, model_cfg):
    self.config = config
    self.task = SegTask(model_cfg)
    m = config.method
    if m.objective in ditta.OBJECTIVES:
      (self.learner, self.step_cfg, self.sched_kw, self.trainable, self.frozen,
       self.prepare) = ditta.build(self.task, m, variables, seed=config.model.init_seed)
    else:
      self.learner, self.step_cfg, self.sched_kw = video_ttt.build(self.task, m)
      self.trainable, self.frozen = split_params(variables, video_ttt.trainable_predicate(m.trainable))
      self.prepare = lambda frames, video_id: frames
    self.mode = m.mode
    self.driver = config.engine.driver
    if self.driver not in ("scan", "stream", "vmap", "sharded"):
      raise ValueError(f"engine.driver must be scan, stream, vmap or sharded; got {self.driver!r}")
    self._step = make_step(self.learner, self.step_cfg)
    self._scan = drivers.scan_driver(self._step)
    self._stream = drivers.stream_driver(self._step)
    self._vmap = None
    self._compiled = {}
    self.compile_seconds = 0.0

  def _compiled_for(self, fn, *args):
    """AOT-compiles `fn` once per input shape, timing compilation separately."""
    key = (id(fn), str(jax.tree.map(lambda x: (x.shape, str(x.dtype)), args)))
    if key not in self._compiled:
      t0 = time.perf_counter()
      self._compiled[key] = fn.lower(*args).compile()
      self.compile_seconds += time.perf_counter() - t0
    return self._compiled[key]

  def state_for(self, frame_HWC, video_index: int):
    key = drivers.video_key(self.config.engine.seed, video_index)
    return init_state(self.learner, self.step_cfg, trainable=self.trainable, frozen=self.frozen,
                      frame_HWC=frame_HWC, key=key)

  def schedule(self, num_frames):
    return make_schedule(self.mode, num_frames, **self.sched_kw)

  def run_one(self, frames_THWC, video_index: int, driver: str | None = None, video_id: str = ""):
    """Predictions `T, H, W` int32 and stats of one video with the scan or stream driver."""
    driver = driver or self.driver
    frames = drivers.check_frames(frames_THWC)
    check_frame_size(self.task.cfg, *frames.shape[1:3])
    frames = self.prepare(frames, video_id)
    sched = self.schedule(len(frames))
    state = self.state_for(frames[0], video_index)
    ticks = drivers.ticks_for(frames, sched)
    if driver == "stream":
      tick0 = jax.tree.map(lambda x: x[0], ticks)
      step = self._compiled_for(self._stream, state, tick0)
      state, outs = drivers.run_schedule_stream(step, state, ticks)
    else:
      state, outs = self._compiled_for(self._scan, state, ticks)(state, ticks)
    labels = np.asarray(outs["labels_HW"])[-len(frames):]
    return labels, {"skipped": int(state.skipped), "resets": int(state.resets),
                    "drift": layer_group_drift(state.trainable, state.anchor)}

  def run_many(self, videos: list[np.ndarray], indices, mesh=None, video_ids=None):
    """Many videos at once (vmap; sharded over `mesh`). Unequal lengths are padded.

    `indices`: each video's index in the dataset (its PRNG stream), or the first
    index of a contiguous run.
    """
    if isinstance(indices, int):
      indices = range(indices, indices + len(videos))
    for i, v in enumerate(videos):
      drivers.check_frames(v, f"video {indices[i]}")
      check_frame_size(self.task.cfg, *v.shape[1:3])
    videos = [self.prepare(v, video_ids[i] if video_ids else "") for i, v in enumerate(videos)]
    scheds = [self.schedule(len(v)) for v in videos]
    length = max(len(s) for s in scheds)
    ticks = drivers.stack_trees([drivers.ticks_for(v, s.pad_to(length)) for v, s in zip(videos, scheds)])
    states = drivers.stack_trees([self.state_for(v[0], indices[i]) for i, v in enumerate(videos)])
    if self._vmap is None or mesh is not None:
      self._vmap = drivers.vmap_driver(self._step, mesh)
    states, outs = self._compiled_for(self._vmap, states, ticks)(states, ticks)
    lab = np.asarray(outs["labels_HW"])
    res = []
    for i, (v, s) in enumerate(zip(videos, scheds)):
      pick = lambda t: jax.tree.map(lambda x: np.asarray(x[i]), t)
      res.append((lab[i, len(s) - len(v):len(s)],
                  {"skipped": int(states.skipped[i]), "resets": int(states.resets[i]),
                   "drift": layer_group_drift(pick(states.trainable), pick(states.anchor))}))
    return res


def run(config, out_dir, *, progress: bool = True) -> dict:
  """Runs `config` end to end; returns the results dict also written to results.json.

  Multi-host (`engine.distributed=True`, every process runs the same command):
  process i takes videos i, i + P, ...; after all have written their predictions,
  process 0 writes results.json.
  """
  out = Path(out_dir)
  pred_dir = out / "predictions"
  pred_dir.mkdir(parents=True, exist_ok=True)
  d = config.data
  if config.engine.distributed:
    jax.distributed.initialize()
  variables, model_cfg, model_meta = load_source_model(config.model, num_classes=d.num_classes)
  if config.method.mode == "offline":
    # Offline memory holds every frame: as many slots as the longest video may have.
    config.method.window = max(config.method.window, d.num_frames)
  runner = VideoRunner(config, variables, model_cfg)
  pc, pi = jax.process_count(), jax.process_index()

  def todo():
    """This process's unfinished videos, read one at a time (resume: finished ones are kept)."""
    n = 0
    for i, (vid, frames, labels) in enumerate(load_videos(d)):
      n += 1
      if i % pc != pi or (pred_dir / f"{vid}.npz").exists():
        continue
      if config.method.mode == "offline" and len(frames) > runner.step_cfg.window:
        raise ValueError(f"video {vid} has {len(frames)} frames but offline memory holds "
                         f"{runner.step_cfg.window}; set data.num_frames or method.window >= {len(frames)}")
      yield i, vid, frames, labels
    if n == 0:
      raise ValueError(f"dataset {d.name!r} yielded no videos")

  def finish(vid, pred, secs, stats):
    save_npz_atomic(pred_dir / f"{vid}.npz", labels=pred.astype(np.int32), seconds=np.float64(secs),
                    skipped=np.int64(stats["skipped"]), resets=np.int64(stats["resets"]),
                    drift_groups=np.array(list(stats["drift"]), dtype=str),
                    drift=np.array(list(stats["drift"].values()), np.float64))

  bar = tqdm(desc=config.method.name, disable=not progress, unit="video")
  if runner.driver in ("vmap", "sharded"):
    mesh = drivers.video_mesh(jax.local_devices()) if runner.driver == "sharded" else None
    per = config.engine.videos_per_batch or (mesh.size if mesh is not None else d.num_videos or 1)
    if mesh is not None and per % mesh.size:
      raise ValueError(f"engine.videos_per_batch={per} must be a multiple of the {mesh.size} devices")
    pending = todo()
    while group := list(itertools.islice(pending, per)):
      vids, idx = [g[2] for g in group], [g[0] for g in group]
      while mesh is not None and len(vids) % mesh.size:  # pad with copies; results dropped
        vids.append(vids[0])
        idx.append(idx[0])
      t0, c0 = time.perf_counter(), runner.compile_seconds
      ids = [g[1] for g in group] + [group[0][1]] * (len(vids) - len(group))
      res = runner.run_many(vids, idx, mesh, video_ids=ids)
      secs = time.perf_counter() - t0 - (runner.compile_seconds - c0)
      tot = sum(len(g[3]) for g in group)
      for (_, vid, _, gt), (pred, stats) in zip(group, res):
        finish(vid, pred, secs * len(gt) / tot, stats)
        bar.update(1)
  else:
    for idx, vid, frames, _ in todo():
      t0, c0 = time.perf_counter(), runner.compile_seconds
      pred, stats = runner.run_one(frames, idx, video_id=vid)
      finish(vid, pred, time.perf_counter() - t0 - (runner.compile_seconds - c0), stats)
      bar.update(1)
  bar.close()
  if pc > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("ttt_jax_videos_done")
    if pi != 0:
      return {}
  # Score every video from its saved predictions (this run's and any resumed ones).
  acc = Accumulator(d.num_classes)
  seconds = skipped = resets = frames_done = 0
  drift: dict[str, list[float]] = {}
  for vid, _, gt in load_videos(d):
    z = np.load(pred_dir / f"{vid}.npz")
    if z["labels"].shape != gt.shape:
      raise ValueError(f"{pred_dir / (vid + '.npz')}: predictions {z['labels'].shape} do not match the "
                       f"video's labels {gt.shape}; remove the file (or --out) to recompute")
    first = eval_start(config.method, len(gt))
    acc.add(vid, z["labels"][first:], gt[first:])
    seconds += float(z["seconds"])
    skipped += int(z["skipped"])
    resets += int(z["resets"])
    frames_done += len(gt)
    if "drift" in z:
      for g, v in zip(z["drift_groups"].tolist(), z["drift"].tolist()):
        drift.setdefault(g, []).append(v)
  summary = acc.summary()
  results = {
      "method": config.method.name, "dataset": d.name, "config": json.loads(config.to_json()),
      "model": model_meta, "versions": versions(), "devices": [str(x) for x in jax.devices()],
      "frames": frames_done, "seconds": seconds,
      "evaluated": "frames after the warm-up" if config.method.eval_after_warmup else "all frames",
      "fps": frames_done / seconds if seconds > 0 else float("nan"),
      "compile_seconds": runner.compile_seconds,
      "fps_note": "frames / wall seconds of the runs, compilation excluded (compile_seconds)",
      "skipped_updates": skipped, "resets": resets,
      "metrics": {k: summary[k] for k in ("miou", "wiou", "mvc8", "mvc16", "frame_miou")},
      "iou_per_class": summary["iou_per_class"], "per_video": summary["per_video"],
      "param_drift": {"note": "||w_end - w_start|| / ||w_start|| per layer group of the trained "
                              "parameters at a video's end, mean and max over videos",
                      "mean": {g: float(np.mean(v)) for g, v in drift.items()},
                      "max": {g: float(np.max(v)) for g, v in drift.items()}},
  }
  write_json(out / "results.json", results)
  return results
