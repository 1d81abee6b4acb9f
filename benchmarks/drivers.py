"""Frames/s of the drivers on a video model (CPU, GPU or TPU), as a table and JSON.

  python benchmarks/drivers.py                      # the default: shipped small model, 64x64
  python benchmarks/drivers.py --native-conv        # without the scan-friendly convolution
  python benchmarks/drivers.py --size b0 --height 128 --width 128 --frames 24
  python benchmarks/drivers.py --size b5 --height 480 --width 864 --batch 32 --micro-batches 4 \\
      --modes adapting --drivers scan  # one cell of benchmarks/accelerator.py's sweep

Rows: predict-only (main task) and adapting (online TTT-MAE: 1 optimizer step per
frame, window 16, batch B, accumulated over --micro-batches) under scan, stream,
and vmap over --videos videos. Frames/s exclude compilation (each program is
compiled ahead of time and run once before timing) and are the best of
--repeats runs; compile seconds are reported apart. Peak memory is the device's
(`memory_stats()['peak_bytes_in_use']` on GPU/TPU) or, on the CPU, the process's
resident-set peak: both cover the whole process, so compare peaks across
processes that each run one cell (benchmarks/accelerator.py does). With
--profile DIR each row also gets its FLOPs per frame (XLA's cost analysis), the
TFLOP/s each driver achieved, and a summary of one traced run (the device's busy
fraction and its longest ops; benchmarks/profiling.py), the trace kept in DIR.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import platform
import resource
import time
from pathlib import Path

import jax


@contextlib.contextmanager
def exclusive(lock_path: str):
  """Holds an exclusive lock on `lock_path` (no-op for '')."""
  if not lock_path:
    yield
    return
  with open(lock_path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def peak_memory_gb() -> tuple[float, str]:
  """`(GB, what)`: the device allocator's peak, or the CPU process's peak resident set."""
  stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 1e9, "device peak_bytes_in_use"
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, "process peak RSS"


# What JAX's default matmul precision means where no precision is set (JAX's "Matmul
# precision" page): float32 dots and convolutions may run at reduced precision inside,
# TF32 on recent NVIDIA GPUs, bfloat16 passes on TPU; full float32 on a CPU. A FLOP rate
# on a GPU is then one of TF32 units, not of float32 ones.
DEFAULT_PRECISION = "default (TF32 on recent NVIDIA GPUs, bfloat16 passes on TPU, float32 on CPU)"


def check_matmul_precision(value: str) -> None:
  """Refuses a `--matmul-precision` JAX does not know, with JAX's list of names; sets
  nothing ('' is JAX's default)."""
  try:
    with jax.default_matmul_precision(value or None):
      pass
  except ValueError as e:
    raise SystemExit(f"--matmul-precision {value!r}: {e}") from None


def set_matmul_precision(value: str) -> str:
  """Sets this process's `jax_default_matmul_precision` to `value` ('' keeps JAX's
  default) and returns what a result should record."""
  check_matmul_precision(value)
  if value:
    jax.config.update("jax_default_matmul_precision", value)
  return jax.config.jax_default_matmul_precision or DEFAULT_PRECISION


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--size", default="builtin", help="'builtin' (shipped small model) or a SegFormer size")
  p.add_argument("--height", type=int, default=64)
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--frames", type=int, default=32)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--micro-batches", type=int, default=1)
  p.add_argument("--remat", default="none", help="none | blocks | blocks_dots (encoder blocks)")
  p.add_argument("--scan-blocks", action="store_true", help="each encoder stage as one lax.scan")
  p.add_argument("--compute-dtype", default="float32", help="float32 | bfloat16 (state stays float32)")
  p.add_argument("--window", type=int, default=16)
  p.add_argument("--videos", type=int, default=4)
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--native-conv", action="store_true", help="plain lax.conv weight gradients")
  p.add_argument("--modes", nargs="+", default=["predict-only", "adapting"],
                 choices=["predict-only", "adapting"])
  p.add_argument("--drivers", nargs="+", default=["scan", "stream", "vmap"],
                 choices=["scan", "stream", "vmap"])
  p.add_argument("--lock", default="", help="a file locked around the timed runs, so cells that "
                 "compile at once in parallel processes never run at once (accelerator.py)")
  p.add_argument("--json", default="benchmarks/results/drivers.json")
  p.add_argument("--profile", default="", help="a directory: each step kind's first driver runs once more "
                 "under jax.profiler (trace kept there, summary in the JSON), and each row gets its "
                 "FLOPs per frame and achieved TFLOP/s (benchmarks/profiling.py)")
  p.add_argument("--matmul-precision", default="", help="jax_default_matmul_precision for float32 "
                 "dots and convolutions: '' (JAX's default: TF32 on recent NVIDIA GPUs), highest, "
                 "tensorfloat32, bfloat16, ... (recorded in the JSON)")
  a = p.parse_args(argv)
  precision = set_matmul_precision(a.matmul_precision)
  if a.native_conv:
    import ttt_jax.models.conv as conv
    conv.conv2d = conv._native  # noqa: SLF001 - the comparison this flag exists for

  from ttt_jax.data.synthetic import VideoSpec, make_video
  from ttt_jax.io.files import write_json
  from ttt_jax.io.versions import versions
  from ttt_jax.methods.defaults import video_config
  from ttt_jax.methods.model_source import source_model
  from ttt_jax.runner.run import make_runner

  def config(mode):
    c = video_config("mae")
    c.model.checkpoint = "builtin" if a.size == "builtin" else "random"
    c.model.size = a.size if a.size != "builtin" else "small"
    c.model.remat = a.remat
    c.model.compute_dtype = a.compute_dtype
    c.model.scan_blocks = a.scan_blocks
    c.method.mode = mode
    c.method.window = a.window
    c.method.batch_size = a.batch
    c.method.micro_batches = a.micro_batches
    return c

  vids = [make_video(VideoSpec(seed=7000 + i, num_frames=a.frames, height=a.height, width=a.width))[0]
          for i in range(a.videos if "vmap" in a.drivers else 1)]

  def timed(fn):
    with exclusive(a.lock):
      fn()  # warm (and compile, where not compiled ahead)
      best = float("inf")
      for _ in range(a.repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best

  rows = []
  for label, mode in (("predict-only", "none"), ("adapting", "window")):
    if label not in a.modes:
      continue
    c = config(mode)
    model = source_model(c)
    r = make_runner(c, model=model)[0]
    fns = {"scan": (lambda: r.run_one("v0", vids[0], 0, driver="scan"), a.frames),
           "stream": (lambda: r.run_one("v0", vids[0], 0, driver="stream"), a.frames),
           "vmap": (lambda: r.run_many([(f"v{i}", v) for i, v in enumerate(vids)], range(len(vids))),
                    a.videos * a.frames)}
    row = {"step": label}
    for d, (fn, n) in fns.items():
      if d not in a.drivers:
        continue
      c0 = r.compile_seconds
      if d != "vmap":  # compiled outside the lock (run_many compiles on its first call)
        r.precompile("v0", vids[0], 0, driver=d)
      row[f"{d}_fps"] = n / timed(fn)
      row[f"{d}_compile_s"] = r.compile_seconds - c0
    if a.profile:
      from profiling import config_frame_flops, profiled
      d = next(d for d in a.drivers if d in fns)
      # Neither may cost the cell its timings: a device without a working tracer
      # (e.g. no CUPTI) records why instead.
      try:
        with exclusive(a.lock):
          row["profile"] = {"driver": d, **profiled(fns[d][0], Path(a.profile) / f"{label}-{d}")}
      except Exception as e:  # noqa: BLE001 - reported in the JSON and the table
        row["profile_error"] = f"{type(e).__name__}: {e}"
      try:
        row["flops_per_frame"] = config_frame_flops(c, model, vids[0])["per_frame"]
        for d in a.drivers:
          row[f"{d}_tflops_per_s"] = row["flops_per_frame"] * row[f"{d}_fps"] / 1e12
      except Exception as e:  # noqa: BLE001
        row["flops_error"] = f"{type(e).__name__}: {e}"
    rows.append(row)
  peak, peak_what = peak_memory_gb()
  result = {
      "device": str(jax.devices()[0]), "platform": platform.processor() or platform.machine(),
      "model": a.size, "frame_size": [a.height, a.width], "frames_per_video": a.frames,
      "batch": a.batch, "micro_batches": a.micro_batches, "remat": a.remat,
      "scan_blocks": a.scan_blocks, "compute_dtype": a.compute_dtype, "matmul_precision": precision,
      "window": a.window, "videos_vmap": a.videos,
      "conv": "native" if a.native_conv else "scan-friendly (shift depthwise, patchify, patches-einsum dW)",
      "rows": rows, "peak_memory_gb": peak, "peak_memory_is": peak_what, "versions": versions()}
  by = {r["step"]: r for r in rows}
  if "adapting" in by and {"scan_fps", "stream_fps"} <= set(by["adapting"]):
    result["scan_over_stream_adapting"] = by["adapting"]["scan_fps"] / by["adapting"]["stream_fps"]
  if len(by) == 2 and "scan_fps" in by["adapting"] and "scan_fps" in by["predict-only"]:
    result["adapt_cost_ratio_scan"] = by["predict-only"]["scan_fps"] / by["adapting"]["scan_fps"]
  print(f"device {result['device']}; model {a.size}; frames {a.height}x{a.width}; {a.frames} frames/video; "
        f"adapting = 1 step/frame, window {a.window}, batch {a.batch} in {a.micro_batches} micro-batches, "
        f"remat {a.remat}, {a.compute_dtype}, scan_blocks {a.scan_blocks}; conv: {result['conv']}; "
        f"matmul precision: {precision}")
  print(f"{'step':<14} {'driver':<8} {'frames/s':>9} {'compile s':>10}")
  for r in rows:
    for d in a.drivers:
      print(f"{r['step']:<14} {d + (' x' + str(a.videos) if d == 'vmap' else ''):<8} "
            f"{r[d + '_fps']:9.2f} {r[d + '_compile_s']:10.1f}")
  for r in rows:
    for k in ("profile_error", "flops_error"):
      if k in r:
        print(f"{r['step']}: {k} {r[k][:200]}")
    if "flops_per_frame" in r:
      print(f"{r['step']}: {r['flops_per_frame'] / 1e9:.4g} GFLOP/frame, "
            + ", ".join(f"{d} {r[d + '_tflops_per_s']:.3g} TFLOP/s" for d in a.drivers))
    if "profile" in r:
      pr = r["profile"]
      print(f"{r['step']}: {pr['driver']} traced: {pr['busy_fraction']:.0%} of {pr['span_ms']:.0f} ms busy "
            f"on {pr['process']}")
      for line in pr["lines"]:
        print(f"  {line['name']}: {line['busy_ms']:.0f} ms busy")
        for o in line["top_ops"][:6]:
          print(f"    {o['ms']:9.1f} ms {o['count']:6d}x  {o['name'][:90]}")
  print(f"peak memory {peak:.2f} GB ({peak_what})")
  for k in ("scan_over_stream_adapting", "adapt_cost_ratio_scan"):
    if k in result:
      print(f"{k}: {result[k]:.2f}x")
  print(f"wrote {write_json(a.json, result)}")
  return result


if __name__ == "__main__":
  main()
