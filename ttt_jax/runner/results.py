"""The results schema of a run (`results.json`) and of one item's predictions."""
from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from ttt_jax.io.files import save_npz
from ttt_jax.io.versions import versions
from ttt_jax.runner.scoring import add_totals

SCHEMA = 2  # 2: grouped method config (method.kind, method.<kind> blocks), runtime hparams


def save_predictions(path: Path, labels, seconds: float, stats: dict) -> None:
  """`predictions/<id>.npz`: labels (T x ...), seconds, skipped, resets, drift per group,
  and each tick's loss (0 where it did not adapt)."""
  extra = {"loss": np.asarray(stats["loss"], np.float32)} if "loss" in stats else {}
  save_npz(path, labels=np.asarray(labels).astype(np.int32), seconds=np.float64(seconds),
           skipped=np.int64(stats["skipped"]), resets=np.int64(stats["resets"]),
           drift_groups=np.array(list(stats["drift"]), dtype=str),
           drift=np.array(list(stats["drift"].values()), np.float64), **extra)


def _common(config, model_meta: dict, tot: dict, drift: dict, compile_seconds: float) -> dict:
  return {
      "schema": SCHEMA,
      "method": config.method.name, "kind": config.method.kind, "dataset": config.data.name,
      "config": json.loads(config.to_json()),
      "model": model_meta, "versions": versions(), "devices": [str(x) for x in jax.devices()],
      "frames": tot["frames"], "seconds": tot["seconds"],
      "fps": tot["frames"] / tot["seconds"] if tot["seconds"] > 0 else float("nan"),
      "compile_seconds": compile_seconds,
      "fps_note": "frames / wall seconds of the runs, compilation excluded (compile_seconds)",
      "skipped_updates": tot["skipped"], "resets": tot["resets"],
      "param_drift": {"note": "||w_end - w_start|| / ||w_start|| per layer group of the trained "
                              "parameters at a video's end, mean and max over videos",
                      "mean": {g: float(np.mean(v)) for g, v in drift.items()},
                      "max": {g: float(np.max(v)) for g, v in drift.items()}},
  }


def results(config, model_meta: dict, scored: dict, compile_seconds: float) -> dict:
  """results.json: method, dataset, resolved config, versions, frames, frames/s,
  metrics, per-video metrics, skipped updates, resets, parameter drift."""
  return {
      **_common(config, model_meta, scored["totals"], scored["drift"], compile_seconds),
      "evaluated": "frames after the warm-up" if config.method.eval_after_warmup else "all frames",
      "metrics": {k: scored[k] for k in ("miou", "wiou", "mvc8", "mvc16", "frame_miou")},
      "iou_per_class": scored["iou_per_class"], "per_video": scored["per_video"],
  }


def unlabelled_results(config, model_meta: dict, pred_dir: Path, video_ids, compile_seconds: float) -> dict:
  """results.json of videos without labels: the same fields but no metrics, and each
  video's frames/s and loss curve (the adaptation loss of every tick)."""
  tot = {"seconds": 0.0, "skipped": 0, "resets": 0, "frames": 0}
  drift: dict[str, list[float]] = {}
  per_video = {}
  for vid in video_ids:
    z = np.load(Path(pred_dir) / f"{vid}.npz")
    n, secs = len(z["labels"]), float(z["seconds"])
    add_totals(tot, drift, z)
    per_video[vid] = {"frames": n, "fps": n / secs if secs > 0 else float("nan"),
                      "loss_curve": z["loss"].tolist() if "loss" in z else None}
  return {**_common(config, model_meta, tot, drift, compile_seconds),
          "evaluated": "nothing: the videos have no labels", "metrics": None, "per_video": per_video}
