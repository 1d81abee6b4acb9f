"""Run a point-cloud config end to end (TTT-KD and its baselines): load the point
model, build the method's plan, run every scene (or the stream of scenes) with the
configured driver, write each scene's predictions as it finishes, score point mIoU
and write results.json.

Outputs (`out_dir`):
    results.json                 method, dataset, resolved config, versions, scenes,
                                 scenes/s, miou, wiou, IoU per class, per-scene mIoU,
                                 skipped updates, parameter drift
    predictions/<scene_id>.npz   labels (the scene's points, in its order), seconds,
                                 skipped, resets, drift

Per-scene runs resume: a rerun with the same `out_dir` skips finished scenes. A
stream (TTT-KD-O) carries weights from scene to scene, so it reruns whole unless
every scene is done.
"""
from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import jax
from tqdm.auto import tqdm

from ttt_jax.data.scenes import load_scenes
from ttt_jax.engine import drivers
from ttt_jax.io.files import write_json
from ttt_jax.io.versions import versions
from ttt_jax.metrics.point_seg import score_scenes
from ttt_jax.runner.programs import ProgramCache
from ttt_jax.runner.results import save_predictions

SCHEMA = 1


def run_scenes(config, out_dir, *, progress: bool = True, programs: ProgramCache | None = None) -> dict:
  from ttt_jax.runner.run import make_runner
  out = Path(out_dir)
  pred_dir = out / "predictions"
  pred_dir.mkdir(parents=True, exist_ok=True)
  d, e, m = config.data, config.engine, config.method
  runner, meta = make_runner(config, programs=programs)
  done = lambda sid: (pred_dir / f"{sid}.npz").exists()
  # Every scene is validated (points, views, cached features) before any runs: a bad
  # one fails the run at once, naming it. Scenes are read again to run them.
  check = getattr(runner.plan.make_ticks, "check", None)
  if check is not None:
    for sid, s in load_scenes(d):
      if not done(sid):
        check(sid, s)
  bar = tqdm(desc=m.name, disable=not progress, unit="scene")

  def save(sid, scene, labels_N, secs, stats):
    n = len(scene.points.coord_N3)
    save_predictions(pred_dir / f"{sid}.npz", labels_N[:n], secs, stats)
    bar.update(1)

  if m.stride > 0:   # TTT-KD-O: one stream, weights carried
    scenes = list(load_scenes(d))
    if not scenes:
      raise ValueError(f"dataset {d.name!r} yielded no scenes")
    if not all(done(sid) for sid, _ in scenes):
      t0, c0 = time.perf_counter(), runner.compile_seconds
      labels, stats = runner.run_one(f"{d.dataset}_stream", scenes, 0, driver=_one_driver(e.driver))
      secs = (time.perf_counter() - t0 - (runner.compile_seconds - c0)) / len(scenes)
      for (sid, scene), lab in zip(scenes, labels):
        save(sid, scene, lab, secs, stats)
  else:
    todo = ((i, sid, s) for i, (sid, s) in enumerate(load_scenes(d)) if not done(sid))
    if e.driver in ("vmap", "sharded"):
      mesh = drivers.video_mesh(jax.local_devices()) if e.driver == "sharded" else None
      per = e.videos_per_batch or (mesh.size if mesh is not None else max(d.num_scenes, 1))
      while group := list(itertools.islice(todo, per)):
        padded = group + [group[0]] * ((-len(group)) % mesh.size if mesh is not None else 0)
        t0, c0 = time.perf_counter(), runner.compile_seconds
        res = runner.run_many([(sid, s) for _, sid, s in padded], [i for i, _, _ in padded], mesh)
        secs = (time.perf_counter() - t0 - (runner.compile_seconds - c0)) / len(group)
        for (_, sid, s), (lab, stats) in zip(group, res):
          save(sid, s, lab[0], secs, stats)
    else:
      for i, sid, s in todo:
        t0, c0 = time.perf_counter(), runner.compile_seconds
        lab, stats = runner.run_one(sid, s, i, driver=e.driver)
        save(sid, s, lab[0], time.perf_counter() - t0 - (runner.compile_seconds - c0), stats)
  bar.close()
  scored = score_scenes(((sid, s.points.segment_N) for sid, s in load_scenes(d)), pred_dir, d.num_classes)
  res = {
      "schema": SCHEMA, "method": m.name, "kind": m.kind, "stride": int(m.stride),
      "dataset": f"{d.name}:{d.get('dataset', '')}:{d.split}",
      "config": json.loads(config.to_json()), "model": meta, "versions": versions(),
      "devices": [str(x) for x in jax.devices()],
      "scenes": scored["scenes"], "seconds": scored["seconds"],
      "scenes_per_s": scored["scenes"] / scored["seconds"] if scored["seconds"] > 0 else float("nan"),
      "compile_seconds": runner.compile_seconds,
      "speed_note": "scenes / wall seconds of the runs, teacher features and lifting included, compilation excluded",
      "skipped_updates": scored["skipped"],
      "metrics": {"miou": scored["miou"], "wiou": scored["wiou"]},
      "iou_per_class": scored["iou_per_class"], "per_scene": scored["per_scene"],
      "param_drift": scored["drift"],
  }
  write_json(out / "results.json", res)
  return res


def _one_driver(driver: str) -> str:
  """A stream is one item: vmap/sharded drivers run it as a scan."""
  return driver if driver in ("scan", "stream") else "scan"
