"""`ttt-jax demo`: the video-TTT methods on held-out synthetic videos, in minutes on a CPU.

Loads the shipped source model (trained by `ttt-jax pretrain
configs/pretrain_synthetic.py`), runs the 'demo' variant (or 'quick') of every
method config on the same held-out videos with the scan driver, prints mIoU /
wIoU / mVC8 / mVC16 / frames/s / lr, and writes `OUT/results.json`,
`OUT/<method>/` (each run's results and predictions), `OUT/per_frame_miou.png`
and `OUT/strip.png`. Every figure comes from `configs/<method>.py:demo`.
"""
from __future__ import annotations

import importlib.resources
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ttt_jax.cli.config_io import load_config_file
from ttt_jax.data.datasets import load_videos
from ttt_jax.io.files import write_json
from ttt_jax.io.versions import versions
from ttt_jax.runner.programs import ProgramCache
from ttt_jax.runner.run import make_runner, run
from ttt_jax.viz.plots import plot_per_frame_miou, plot_strip

METHODS = ("main_task", "ttt_mae_no_mem", "online_ttt_mae", "implicit_only", "explicit_only",
           "offline", "norm_adapt", "tent", "self_train")
MAIN = ("main_task", "ttt_mae_no_mem", "online_ttt_mae", "offline")


def config_path(name: str) -> Path:
  """The installed `configs/<name>.py` (package data `ttt_jax.configs`)."""
  p = importlib.resources.files("ttt_jax.configs") / f"{name}.py"
  if not p.is_file():
    raise FileNotFoundError(f"config {name}.py is not installed with ttt_jax (package ttt_jax.configs)")
  return Path(str(p))


def demo_config(name: str, *, quick: bool):
  """`configs/<name>.py:demo` (or `:quick`)."""
  return load_config_file(f"{config_path(name)}:{'quick' if quick else 'demo'}")


def format_table(rows: dict[str, dict]) -> str:
  head = f"{'method':<16} {'mIoU':>6} {'wIoU':>6} {'mVC8':>6} {'mVC16':>6} {'frames/s':>9} {'lr':>8}"
  lines = [head, "-" * len(head)]
  for name, r in rows.items():
    m = r["metrics"]
    lr = r["config"]["method"]["optimizer"]["lr"] if r["config"]["method"]["mode"] != "none" else None
    lines.append(f"{name:<16} {100 * m['miou']:6.2f} {100 * m['wiou']:6.2f} {100 * m['mvc8']:6.2f} "
                 f"{100 * m['mvc16']:6.2f} {r['fps']:9.1f} {lr if lr is not None else '-':>8}")
  return "\n".join(lines)


def precompile(configs, programs: ProgramCache) -> float:
  """Compiles the distinct programs of `configs` at once, one thread each (XLA
  compiles without holding the GIL, and one compilation keeps about one core busy);
  returns the wall seconds. The runs then find their programs in `programs`."""
  runners = {}
  for c in configs:
    runner, _ = make_runner(c, programs=programs)
    runners.setdefault(runner.plan.program_key or id(runner), runner)
  vid, frames, _ = next(iter(load_videos(configs[0].data)))
  t0 = time.perf_counter()
  with ThreadPoolExecutor(max_workers=len(runners)) as pool:
    list(pool.map(lambda r: r.precompile(vid, frames), runners.values()))
  return time.perf_counter() - t0


def demo(out_dir="demo_out", *, quick: bool = False) -> dict:
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  t0 = time.perf_counter()
  rows = {}
  configs = {name: demo_config(name, quick=quick) for name in METHODS}
  programs = ProgramCache()  # the demo variants share one program (engine.share_kinds)
  print(f"compiling the programs of {len(METHODS)} methods ...", flush=True)
  compile_wall = precompile(list(configs.values()), programs)
  for name in METHODS:
    rows[name] = run(configs[name], out / name, progress=True, programs=programs)
  c = configs["main_task"]
  print(f"\nSynthetic benchmark, {c.data.num_videos} held-out videos x {c.data.num_frames} frames "
        f"of {c.data.height}x{c.data.width}, batch {c.method.batch_size} from the window; "
        f"configs/<method>.py:{'quick' if quick else 'demo'}; every method runs one shared program "
        f"(engine.share_kinds); frames/s excludes compilation")
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
             "variant": "quick" if quick else "demo", "versions": versions(),
             "seconds": time.perf_counter() - t0,
             "compile_seconds": compile_wall + sum(r["compile_seconds"] for r in rows.values()),
             "methods": {n: {"metrics": r["metrics"], "fps": r["fps"], "skipped_updates": r["skipped_updates"],
                             "lr": r["config"]["method"]["optimizer"]["lr"]}
                         for n, r in rows.items()}}
  write_json(out / "results.json", summary)
  print(f"wrote {out / 'results.json'}, {out / 'per_frame_miou.png'}, {out / 'strip.png'} "
        f"({summary['seconds']:.0f} s, of which compiling {summary['compile_seconds']:.0f} s)")
  return summary
