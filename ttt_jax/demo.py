"""`ttt-jax demo`: the video-TTT methods on held-out synthetic videos, in minutes on a CPU.

Loads the shipped source model (trained by `ttt-jax pretrain
configs/pretrain_synthetic.py`), runs every method config on the same held-out
videos with the scan driver, prints mIoU / wIoU / mVC8 / mVC16 / frames/s, and
writes `OUT/results.json`, `OUT/<method>/` (each run's results and predictions),
`OUT/per_frame_miou.png` and `OUT/strip.png`.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ttt_jax.cli.config_io import load_config_file
from ttt_jax.data.datasets import load_videos
from ttt_jax.methods.video_run import run, versions, write_json
from ttt_jax.viz.plots import plot_per_frame_miou, plot_strip

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
METHODS = ("main_task", "ttt_mae_no_mem", "online_ttt_mae", "implicit_only", "explicit_only",
           "offline", "norm_adapt", "tent", "self_train")
MAIN = ("main_task", "ttt_mae_no_mem", "online_ttt_mae", "offline")
DEMO_LR = {"mae": 3e-3, "self_train": 1e-3}


def demo_config(name: str, *, quick: bool):
  c = load_config_file(CONFIGS / f"{name}.py")
  c.data.seed = 1000          # held out: pretraining stills use seed 1
  c.data.num_videos = 2 if quick else 4
  c.data.num_frames = 24 if quick else 48
  c.method.batch_size = 8 if quick else 16
  # The reference lr (1e-4) is for large pretrained models. For the shipped small
  # model, `benchmarks/video_ttt.py --sweep-lr` on tuning seeds 5000/6000 (never scored)
  # gave online TTT-MAE 48.75 / 48.54 / 48.97 / 49.05 mIoU at 1e-4 / 3e-4 / 1e-3 / 3e-3
  # (main task 49.05): the best, 3e-3, is used; self-training keeps 1e-3.
  c.method.lr = DEMO_LR.get(c.method.objective, c.method.lr)
  if name == "offline":
    c.method.offline_iters = c.data.num_frames
  return c


def format_table(rows: dict[str, dict]) -> str:
  head = f"{'method':<16} {'mIoU':>6} {'wIoU':>6} {'mVC8':>6} {'mVC16':>6} {'frames/s':>9}"
  lines = [head, "-" * len(head)]
  for name, r in rows.items():
    m = r["metrics"]
    lines.append(f"{name:<16} {100 * m['miou']:6.2f} {100 * m['wiou']:6.2f} {100 * m['mvc8']:6.2f} "
                 f"{100 * m['mvc16']:6.2f} {r['fps']:9.1f}")
  return "\n".join(lines)


def demo(out_dir="demo_out", *, quick: bool = False) -> dict:
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  t0 = time.perf_counter()
  rows = {}
  for name in METHODS:
    rows[name] = run(demo_config(name, quick=quick), out / name, progress=True)
  c = demo_config("main_task", quick=quick)
  print(f"\nSynthetic benchmark, {c.data.num_videos} held-out videos x {c.data.num_frames} frames "
        f"of {c.data.height}x{c.data.width}, batch {c.method.batch_size} from the window; "
        "frames/s excludes compilation")
  print(format_table(rows))
  curves = {n: np.nanmean([v["per_frame_miou"] for v in rows[n]["per_video"].values()], axis=0)
            for n in MAIN}
  plot_per_frame_miou(curves, out / "per_frame_miou.png",
                      "per-frame mIoU, mean over held-out videos")
  vid, frames, gt = next(iter(load_videos(c.data)))
  preds = {n: np.load(out / n / "predictions" / f"{vid}.npz")["labels"] for n in MAIN}
  plot_strip(frames, gt, preds, out / "strip.png", every=max(1, len(frames) // 6))
  summary = {"benchmark": "synthetic", "videos": c.data.num_videos, "frames_per_video": c.data.num_frames,
             "frame_size": [c.data.height, c.data.width], "batch_size": c.method.batch_size,
             "versions": versions(), "seconds": time.perf_counter() - t0,
             "methods": {n: {"metrics": r["metrics"], "fps": r["fps"], "skipped_updates": r["skipped_updates"]}
                         for n, r in rows.items()}}
  write_json(out / "results.json", summary)
  print(f"wrote {out / 'results.json'}, {out / 'per_frame_miou.png'}, {out / 'strip.png'} "
        f"({summary['seconds']:.0f} s)")
  return summary
