"""The accelerator sweep: frames/s, compile seconds and peak memory per model size,
frame size, step kind and driver, one process per cell, as a table and JSON.

  python benchmarks/accelerator.py --out benchmarks/results/accelerator   # the full sweep
  python benchmarks/accelerator.py --quick --out /tmp/acc                 # tiny cells (CPU smoke)
  python benchmarks/accelerator.py ditta --size b5 --height 480 --width 864   # one DiTTA cell
  python benchmarks/accelerator.py --short --parallel 2 --profile --out $OUT/acc   # a short lease

Cells (issue 14's figures): SegFormer B0 / B2 / B5 at 512 x 512 and 864 x 480,
predict-only and adapting (online TTT-MAE: one step per frame on a batch of 32
from a window of 16), under scan, stream and vmap over videos; DiTTA's frozen
inference (plain + add-on fusion, mode 'none') for B5 at VSPW size. The
adapting step's batch is split into micro-batches where a cell says so (same
update, less memory). Each cell runs `benchmarks/drivers.py` (or the DiTTA cell)
in its own process, so each peak is its own; a cell that fails (out of memory,
time limit) is recorded with its log's tail and the sweep goes on. With
--parallel N, N cells compile at once (XLA compiles on the host's cores) while
their timed runs take turns through a lock file; compile seconds are then those
of concurrent compilations. Results are written
after every cell (`<out>/accelerator.json`), and a rerun skips finished cells.
--profile adds FLOPs per frame, achieved TFLOP/s and a traced run's busiest ops
to each video cell (`drivers.py --profile`; traces under `<out>/profiles`).
--matmul-precision sets every cell's `jax_default_matmul_precision` (JAX's default
runs float32 dots and convolutions on TF32 units on recent NVIDIA GPUs; 'highest'
for true float32); each cell records it, and a sweep resumes only at its own.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VSPW_HW = (480, 864)   # VSPW's frames fit and padded by the reader (DESIGN.md)
# Sizes whose encoder stages run as one lax.scan each (`model.scan_blocks`) unless a cell
# says otherwise: B5 unrolled (52 blocks) had not compiled after 390 to 530 s on an H100;
# on the CPU (64x64, batch 2) scanning cut B5's adapting compile from 125 to 98 s and cost
# 13% in frames/s, and made B2's slower to compile (31 against 25 s), so B2 stays unrolled.
DEEP = ("b3", "b4", "b5")


def _scan_flag(cell: dict) -> list[str]:
  return ["--scan-blocks"] if cell.get("scan_blocks", cell["size"] in DEEP) else []


def short_cells() -> list[dict]:
  """A few minutes' lease: native convolutions (fewer ops to compile on a GPU) and
  micro-batches small enough that the scan's batch-32 programs fit beside another."""
  h, w = VSPW_HW
  big = dict(frames=16, batch=32, videos=1, repeats=1, native_conv=True, height=h, width=w,
             drivers=["scan"])
  return [dict(big, name="b5-864x480-adapt-scan-short", size="b5", modes=["adapting"], micro_batches=8),
          dict(big, name="b0-864x480-short", size="b0", modes=["predict-only", "adapting"], micro_batches=2),
          dict(big, name="b2-864x480-short", size="b2", modes=["predict-only", "adapting"], micro_batches=4),
          dict(big, name="b5-864x480-predict-short", size="b5", modes=["predict-only"], micro_batches=8)]


def cells(quick: bool) -> list[dict]:
  """The sweep, most important first (a lease may end before the last)."""
  if quick:
    t = dict(size="tiny", height=32, width=32, frames=4, batch=4, videos=2, repeats=1)
    return [dict(t, name="tiny-predict-all", modes=["predict-only"], drivers=["scan", "stream", "vmap"]),
            dict(t, name="tiny-adapt-scan-mb2", modes=["adapting"], drivers=["scan"], micro_batches=2),
            dict(t, name="tiny-ditta", kind="ditta")]
  out = []
  h, w = VSPW_HW
  big = dict(frames=16, batch=32, videos=1, repeats=1)
  # The headline: B5 adapting at VSPW size (the reference: 4.1 s per frame on an A100).
  out.append(dict(big, name="b5-864x480-adapt-scan", size="b5", height=h, width=w,
                  modes=["adapting"], drivers=["scan"], micro_batches=4))
  out.append(dict(big, name="b5-864x480-predict-scan", size="b5", height=h, width=w,
                  modes=["predict-only"], drivers=["scan"]))
  out.append(dict(name="ditta-b5-864x480", kind="ditta", size="b5", height=h, width=w, frames=16))
  for size, mb in (("b2", 2), ("b0", 1)):
    out.append(dict(big, name=f"{size}-864x480-adapt-scan", size=size, height=h, width=w,
                    modes=["adapting"], drivers=["scan"], micro_batches=mb))
    out.append(dict(big, name=f"{size}-864x480-predict-scan", size=size, height=h, width=w,
                    modes=["predict-only"], drivers=["scan"]))
  # Drivers compared where they all fit: B0 at 512 x 512.
  out.append(dict(frames=16, batch=32, videos=4, repeats=1, name="b0-512-predict-drivers", size="b0",
                  height=512, width=512, modes=["predict-only"], drivers=["scan", "stream", "vmap"]))
  out.append(dict(frames=16, batch=32, videos=4, repeats=1, name="b0-512-adapt-drivers", size="b0",
                  height=512, width=512, modes=["adapting"], drivers=["scan", "stream", "vmap"]))
  for size, mb in (("b2", 2), ("b5", 4)):
    out.append(dict(big, name=f"{size}-512-adapt-scan", size=size, height=512, width=512,
                    modes=["adapting"], drivers=["scan"], micro_batches=mb))
    out.append(dict(big, name=f"{size}-512-predict-scan", size=size, height=512, width=512,
                    modes=["predict-only"], drivers=["scan"]))
  out.append(dict(big, name="b5-864x480-adapt-remat", size="b5", height=h, width=w,
                  modes=["adapting"], drivers=["scan"], remat="blocks"))
  out.append(dict(big, name="b5-864x480-adapt-native-conv", size="b5", height=h, width=w,
                  modes=["adapting"], drivers=["scan"], micro_batches=4, native_conv=True))
  out.append(dict(big, name="b5-864x480-adapt-bf16", size="b5", height=h, width=w,
                  modes=["adapting"], drivers=["scan"], micro_batches=4, compute_dtype="bfloat16"))
  out.append(dict(big, name="b5-864x480-adapt-stream", size="b5", height=h, width=w,
                  modes=["adapting"], drivers=["stream"], micro_batches=4))
  return out


def _argv(cell: dict, json_path: Path) -> list[str]:
  precision = ["--matmul-precision", cell.get("matmul_precision", "")]
  if cell.get("kind") == "ditta":
    return [sys.executable, str(Path(__file__).resolve()), "ditta", "--size", cell["size"],
            "--height", str(cell["height"]), "--width", str(cell["width"]),
            "--frames", str(cell["frames"]), "--json", str(json_path)] + _scan_flag(cell) + precision
  argv = [sys.executable, str(HERE / "drivers.py"), "--json", str(json_path)]
  for k in ("size", "height", "width", "frames", "batch", "videos", "repeats"):
    argv += [f"--{k}", str(cell[k])]
  argv += ["--micro-batches", str(cell.get("micro_batches", 1)), "--remat", cell.get("remat", "none"),
           "--compute-dtype", cell.get("compute_dtype", "float32"),
           "--modes", *cell["modes"], "--drivers", *cell["drivers"]]
  argv += _scan_flag(cell) + precision
  return argv + (["--native-conv"] if cell.get("native_conv") else [])


def ditta_cell(argv=None):
  """Frames/s of DiTTA's frozen inference (plain + add-on + fusion; mode 'none') and
  of the ISS model alone, on a random-weight SegFormer of --size."""
  p = argparse.ArgumentParser()
  p.add_argument("--size", default="b5")
  p.add_argument("--height", type=int, default=VSPW_HW[0])
  p.add_argument("--width", type=int, default=VSPW_HW[1])
  p.add_argument("--frames", type=int, default=16)
  p.add_argument("--scan-blocks", action="store_true", help="each encoder stage as one lax.scan")
  p.add_argument("--matmul-precision", default="", help="as drivers.py's ('' = JAX's default)")
  p.add_argument("--json", required=True)
  p.add_argument("--lock", default="")
  a = p.parse_args(argv)
  import jax
  from drivers import exclusive, peak_memory_gb, set_matmul_precision
  precision = set_matmul_precision(a.matmul_precision)
  from ttt_jax.data.synthetic import VideoSpec, make_video
  from ttt_jax.io.files import write_json
  from ttt_jax.methods.defaults import ditta_config
  from ttt_jax.runner.run import make_runner

  frames = make_video(VideoSpec(seed=7000, num_frames=a.frames, height=a.height, width=a.width))[0]
  out = {"device": str(jax.devices()[0]), "model": a.size, "frame_size": [a.height, a.width],
         "frames_per_video": a.frames, "scan_blocks": a.scan_blocks, "matmul_precision": precision}
  for name, cfg in (("ditta", ditta_config(distill=False)), ("iss", ditta_config(kind="none", name="iss"))):
    with cfg.unlocked():
      cfg.model.checkpoint, cfg.model.size, cfg.method.mode = "random", a.size, "none"
      cfg.model.scan_blocks = a.scan_blocks
      cfg.data.height, cfg.data.width = a.height, a.width
    r = make_runner(cfg)[0]
    r.precompile("v", frames, 0)
    with exclusive(a.lock):
      r.run_one("v", frames, 0)  # warm
      t0 = time.perf_counter()
      r.run_one("v", frames, 0)
      out[f"{name}_fps"] = a.frames / (time.perf_counter() - t0)
    out[f"{name}_compile_s"] = r.compile_seconds
  out["peak_memory_gb"], out["peak_memory_is"] = peak_memory_gb()
  print(json.dumps(out))
  write_json(a.json, out)


def fmt(cell: dict, res: dict) -> list[str]:
  """Table lines of one cell's result."""
  if "error" in res:
    return [f"{cell['name']:<26} FAILED: {res['error'][-160:]}"]
  if cell.get("kind") == "ditta":
    return [f"{cell['name']:<26} ditta frozen {res['ditta_fps']:8.2f} fps (compile {res['ditta_compile_s']:.0f} s); "
            f"ISS alone {res['iss_fps']:.2f} fps; peak {res['peak_memory_gb']:.1f} GB"]
  lines = []
  for row in res["rows"]:
    for d in cell["drivers"]:
      lines.append(f"{cell['name']:<26} {row['step']:<13} {d:<7} {row[d + '_fps']:9.2f} fps "
                   f"{row[d + '_compile_s']:7.1f} s compile  peak {res['peak_memory_gb']:6.2f} GB "
                   f"(batch {res['batch']} / {res['micro_batches']} micro)"
                   + (f" {row[d + '_tflops_per_s']:.3g} TFLOP/s" if d + "_tflops_per_s" in row else ""))
    for k in ("profile_error", "flops_error"):
      if k in row:
        lines.append(f"{'':<26} {row['step']:<13} {k}: {row[k][:120]}")
    if "profile" in row:
      pr = row["profile"]
      top = pr["lines"][0]["top_ops"][:3] if pr["lines"] else []
      lines.append(f"{'':<26} {row['step']:<13} traced: {pr['process']} busy {pr['busy_fraction']:.0%} of "
                   f"{pr['span_ms']:.0f} ms; top: " + "; ".join(f"{o['name'][:40]} {o['ms']:.0f} ms" for o in top))
  return lines


def sweep(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out", default="benchmarks/results/accelerator")
  p.add_argument("--quick", action="store_true", help="tiny cells: checks the sweep's wiring on a CPU")
  p.add_argument("--short", action="store_true", help="the cells a few minutes' lease can take")
  p.add_argument("--cell-timeout", type=float, default=300.0, help="seconds before a cell is stopped")
  p.add_argument("--only", nargs="*", default=None, help="cell names to run (default: all)")
  p.add_argument("--profile", action="store_true",
                 help="each video cell traces one run per step kind (<out>/profiles/<cell>) and reports "
                 "FLOPs per frame, achieved TFLOP/s and the device's busiest ops (drivers.py --profile)")
  p.add_argument("--parallel", type=int, default=1,
                 help="cells compiling at once (their timed runs still take turns: a lock file)")
  p.add_argument("--matmul-precision", default="",
                 help="every cell's jax_default_matmul_precision ('' = JAX's default: TF32 for float32 "
                 "dots and convolutions on recent NVIDIA GPUs; 'highest' for true float32)")
  a = p.parse_args(argv)
  from drivers import check_matmul_precision
  check_matmul_precision(a.matmul_precision)   # an unknown name is refused here, before any cell
  out = Path(a.out)
  summary = out / "accelerator.json"
  done = json.loads(summary.read_text()) if summary.exists() else {}
  # A rerun resumes a sweep; one at another precision would mix figures under one name.
  other = sorted(n for n, r in done.items() if r.get("cell", {}).get("matmul_precision", "") != a.matmul_precision)
  if other:
    raise SystemExit(f"--out {out}: cells {other} were run at another --matmul-precision "
                     f"(asked: {a.matmul_precision!r}); give this precision its own --out")
  out.mkdir(parents=True, exist_ok=True)
  from ttt_jax.io.files import write_json
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent),
                                                      os.environ.get("PYTHONPATH", "")])}
  todo = [dict(c, matmul_precision=a.matmul_precision) for c in (short_cells() if a.short else cells(a.quick))
          if not (a.only and c["name"] not in a.only)
          and not ("rows" in done.get(c["name"], {}) or "ditta_fps" in done.get(c["name"], {}))]
  (out / "cells").mkdir(exist_ok=True)
  lock = out / "device.lock"
  running = []   # (cell, process, log file, start)

  def finish(cell, proc, log, t0, error=None):
    log.close()
    path = out / "cells" / f"{cell['name']}.json"
    if error is None and proc.returncode == 0 and path.exists():
      res = json.loads(path.read_text())
    else:
      tail = (out / "cells" / f"{cell['name']}.log").read_text()[-2000:]
      res = {"error": error or tail, "log_tail": tail}
    res["cell_wall_s"] = time.perf_counter() - t0
    done[cell["name"]] = {**res, "cell": cell}
    write_json(summary, done)
    for line in fmt(cell, res):
      print(line, flush=True)

  while todo or running:
    while todo and len(running) < a.parallel:
      cell = todo.pop(0)
      log = open(out / "cells" / f"{cell['name']}.log", "w")
      argv = _argv(cell, out / "cells" / f"{cell['name']}.json") + ["--lock", str(lock)]
      if a.profile and cell.get("kind") != "ditta":
        argv += ["--profile", str(out / "profiles" / cell["name"])]
      running.append((cell, subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT),
                      log, time.perf_counter()))
    time.sleep(1.0)
    for item in list(running):
      cell, proc, log, t0 = item
      if proc.poll() is not None:
        running.remove(item)
        finish(cell, proc, log, t0)
      elif time.perf_counter() - t0 > a.cell_timeout:
        proc.kill()
        proc.wait()
        running.remove(item)
        finish(cell, proc, log, t0, error=f"stopped after {a.cell_timeout:.0f} s (--cell-timeout)")
  print(f"wrote {summary}")
  return done


if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1] == "ditta":
    ditta_cell(sys.argv[2:])
  else:
    sweep(sys.argv[1:])
