"""Frames/s of the drivers on the default video model (CPU or GPU), as a table and JSON.

  python benchmarks/drivers.py                      # the default: shipped small model, 64x64
  python benchmarks/drivers.py --native-conv        # without the scan-friendly convolution
  python benchmarks/drivers.py --size b0 --height 128 --width 128 --frames 24

Rows: predict-only (main task) and adapting (online TTT-MAE: 1 optimizer step per
frame, window 16, batch B) under scan, stream, and vmap over 4 videos. Times
exclude compilation (each program is compiled and run once before timing) and
are the best of --repeats runs.
"""
from __future__ import annotations

import argparse
import platform
import time

import jax


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--size", default="builtin", help="'builtin' (shipped small model) or a SegFormer size")
  p.add_argument("--height", type=int, default=64)
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--frames", type=int, default=32)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--window", type=int, default=16)
  p.add_argument("--videos", type=int, default=4)
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--native-conv", action="store_true", help="plain lax.conv weight gradients")
  p.add_argument("--drivers", nargs="+", default=["scan", "stream", "vmap"],
                 choices=["scan", "stream", "vmap"])
  p.add_argument("--json", default="benchmarks/results/drivers.json")
  a = p.parse_args(argv)
  if a.native_conv:
    import ttt_jax.models.conv as conv
    conv.conv2d = conv._native  # noqa: SLF001 - the comparison this flag exists for

  from ttt_jax.data.synthetic import VideoSpec, make_video
  from ttt_jax.io.files import write_json
  from ttt_jax.io.versions import versions
  from ttt_jax.methods.defaults import video_config
  from ttt_jax.runner.run import make_runner

  def runner(mode):
    c = video_config("mae")
    c.model.checkpoint = "builtin" if a.size == "builtin" else "random"
    c.model.size = a.size if a.size != "builtin" else "small"
    c.method.mode = mode
    c.method.window = a.window
    c.method.batch_size = a.batch
    return make_runner(c)[0]

  vids = [make_video(VideoSpec(seed=7000 + i, num_frames=a.frames, height=a.height, width=a.width))[0]
          for i in range(a.videos)]

  def timed(fn):
    fn()  # compile + warm
    best = float("inf")
    for _ in range(a.repeats):
      t0 = time.perf_counter()
      fn()
      best = min(best, time.perf_counter() - t0)
    return best

  rows = []
  for label, mode in (("predict-only", "none"), ("adapting", "window")):
    r = runner(mode)
    fns = {"scan": (lambda: r.run_one("v0", vids[0], 0, driver="scan"), a.frames),
           "stream": (lambda: r.run_one("v0", vids[0], 0, driver="stream"), a.frames),
           "vmap": (lambda: r.run_many([(f"v{i}", v) for i, v in enumerate(vids)], range(len(vids))),
                    a.videos * a.frames)}
    row = {"step": label}
    for d, (fn, n) in fns.items():
      row[f"{d}_fps"] = n / timed(fn) if d in a.drivers else float("nan")
    rows.append(row)
  pred, adapt = rows
  result = {
      "device": str(jax.devices()[0]), "platform": platform.processor() or platform.machine(),
      "model": a.size, "frame_size": [a.height, a.width], "frames_per_video": a.frames,
      "batch": a.batch, "window": a.window, "videos_vmap": a.videos,
      "conv": "native" if a.native_conv else "scan-friendly (shift depthwise, patchify, patches-einsum dW)",
      "rows": rows, "scan_over_stream_adapting": adapt["scan_fps"] / adapt["stream_fps"],
      "adapt_cost_ratio_scan": pred["scan_fps"] / adapt["scan_fps"],
      "versions": versions()}
  print(f"device {result['device']}; model {a.size}; frames {a.height}x{a.width}; {a.frames} frames/video; "
        f"adapting = 1 step/frame, window {a.window}, batch {a.batch}; conv: {result['conv']}")
  print(f"{'step':<14} {'scan':>9} {'stream':>9} {'vmap x' + str(a.videos):>9}   (frames/s)")
  for r in rows:
    print(f"{r['step']:<14} {r['scan_fps']:9.1f} {r['stream_fps']:9.1f} {r['vmap_fps']:9.1f}")
  print(f"scan / stream (adapting): {result['scan_over_stream_adapting']:.2f}x; "
        f"adapting step costs {result['adapt_cost_ratio_scan']:.1f}x predict-only (scan)")
  print(f"wrote {write_json(a.json, result)}")
  return result


if __name__ == "__main__":
  main()
