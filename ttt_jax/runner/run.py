"""Run a config end to end: load the model, build the method's plan, run every
video with the configured driver, write predictions as they finish, score, and
write results.json.

Outputs (`out_dir`):
    results.json                 method, dataset, resolved config, versions, frames,
                                 frames/s, miou, wiou, mvc8, mvc16, per-video metrics,
                                 skipped (non-finite) updates, parameter drift
    predictions/<video_id>.npz   labels (T x H x W, integer), seconds, skipped, resets,
                                 each tick's loss
    overlays/<video_id>.jpg      (data.name=frames: unlabelled videos) predictions over
                                 8 frames; results.json then has no metrics, and each
                                 video's frames/s and loss curve

Each video's predictions are written atomically as soon as it finishes; a rerun
with the same `out_dir` skips finished videos (resume after a kill).
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from ttt_jax.data.datasets import load_videos
from ttt_jax.engine import drivers
from ttt_jax.io.files import write_json
from ttt_jax.methods.model_source import source_model
from ttt_jax.methods.registry import get_method
from ttt_jax.runner import hosts
from ttt_jax.runner.programs import DRIVERS, ProgramCache, Runner
from ttt_jax.runner.results import results, save_predictions, unlabelled_results
from ttt_jax.runner.scoring import score
from ttt_jax.viz.overlay import write_overlay_strip


def is_point_config(config) -> bool:
  return config.model.get("arch", "segformer") == "point_seg"


def make_runner(config, model=None, programs: ProgramCache | None = None) -> tuple[Runner, dict]:
  """The `Runner` of a config's method on its source model, and the model's metadata.
  `programs` shares compiled programs with earlier runners."""
  if config.engine.driver not in DRIVERS:
    raise ValueError(f"engine.driver must be one of {DRIVERS}; got {config.engine.driver!r}")
  model = model or source_model(config)
  plan = get_method(config.method.kind, points=is_point_config(config)).build(config, model)
  return Runner(plan, seed=config.engine.seed, scan_chunk=config.engine.scan_chunk,
                programs=programs, batching=config.engine.batching), model.meta


def run(config, out_dir, *, progress: bool = True, programs: ProgramCache | None = None) -> dict:
  """Runs `config`; returns the results dict also written to results.json (an empty
  dict on processes other than 0 of a multi-host run). `config` is not modified.
  `programs` shares compiled programs between runs (see `ProgramCache`)."""
  if is_point_config(config):
    from ttt_jax.runner.run_scenes import run_scenes
    return run_scenes(config, out_dir, progress=progress, programs=programs)
  out = Path(out_dir)
  pred_dir = out / "predictions"
  pred_dir.mkdir(parents=True, exist_ok=True)
  d, e = config.data, config.engine
  hosts.start(e.distributed)
  runner, meta = make_runner(config, programs=programs)

  def todo():
    """This process's unfinished videos, read one at a time (finished ones are kept)."""
    n = 0
    for i, (vid, frames, _) in enumerate(load_videos(d)):
      n += 1
      if hosts.mine(i) and not (pred_dir / f"{vid}.npz").exists():
        yield i, vid, frames
    if n == 0:
      raise ValueError(f"dataset {d.name!r} yielded no videos")

  bar = tqdm(desc=config.method.name, disable=not progress, unit="video")
  if e.driver in ("vmap", "sharded"):
    mesh = drivers.video_mesh(jax.local_devices()) if e.driver == "sharded" else None
    per = e.videos_per_batch or (mesh.size if mesh is not None else d.num_videos or 1)
    if mesh is not None and per % mesh.size:
      raise ValueError(f"engine.videos_per_batch={per} must be a multiple of the {mesh.size} devices")
    pending = todo()
    while group := list(itertools.islice(pending, per)):
      padded = group + [group[0]] * ((-len(group)) % mesh.size if mesh is not None else 0)
      t0, c0 = time.perf_counter(), runner.compile_seconds
      res = runner.run_many([(vid, f) for _, vid, f in padded], [i for i, _, _ in padded], mesh)
      secs = time.perf_counter() - t0 - (runner.compile_seconds - c0)
      tot = sum(len(f) for _, _, f in group)
      for (_, vid, f), (pred, stats) in zip(group, res):  # padding copies are dropped
        save_predictions(pred_dir / f"{vid}.npz", pred, secs * len(f) / tot, stats)
        bar.update(1)
  else:
    for idx, vid, frames in todo():
      t0, c0 = time.perf_counter(), runner.compile_seconds
      pred, stats = runner.run_one(vid, frames, idx, driver=e.driver)
      save_predictions(pred_dir / f"{vid}.npz", pred,
                       time.perf_counter() - t0 - (runner.compile_seconds - c0), stats)
      bar.update(1)
  bar.close()
  if not hosts.finish_and_elect():
    return {}
  if d.name == "frames":  # your own video: no labels, so no metrics; overlays to look at
    ids = []
    for vid, frames, _ in load_videos(d):
      ids.append(vid)
      write_overlay_strip(out / "overlays" / f"{vid}.jpg", frames, np.load(pred_dir / f"{vid}.npz")["labels"])
    res = unlabelled_results(config, meta, pred_dir, ids, runner.compile_seconds)
    write_json(out / "results.json", res)
    return res
  # Score every video from its saved predictions (this run's and any resumed ones).
  scored = score(((vid, gt) for vid, _, gt in load_videos(d)), pred_dir, d.num_classes,
                 runner.plan.first_scored)
  res = results(config, meta, scored, runner.compile_seconds)
  write_json(out / "results.json", res)
  return res
