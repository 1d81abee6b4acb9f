"""Peak memory and frames/s of the adapting step per model size, frame size and
micro-batch split, one process per cell, as a table and JSON.

  python benchmarks/memory.py                          # the shipped small model at VSPW size
  python benchmarks/memory.py --sizes b0 --micro 1 4 --frames 8 16

Each cell is `benchmarks/drivers.py --modes adapting --drivers scan` (online
TTT-MAE, one step per frame on a batch of --batch frames from a window of 16)
in its own process: the peak is the CPU process's resident set, or on a GPU/TPU
the device allocator's peak. Two video lengths per setting show whether memory
grows with the video (it must not: the scan carries a fixed-size state).
Target on the 24 GB CPU machine: batch 32 at 864 x 480 with the small model
under 6 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--sizes", nargs="+", default=["builtin"], help="'builtin' (shipped small) or SegFormer sizes")
  p.add_argument("--height", type=int, default=480)
  p.add_argument("--width", type=int, default=864)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--micro", nargs="+", type=int, default=[4, 8], help="micro-batch splits to measure")
  p.add_argument("--remat", default="none")
  p.add_argument("--scan-blocks", action="store_true",
                 help="each encoder stage as one lax.scan (on a CPU, what lets --remat save memory)")
  p.add_argument("--compute-dtype", default="float32")
  p.add_argument("--frames", nargs="+", type=int, default=[4, 8], help="video lengths (memory must stay flat)")
  p.add_argument("--out", default="benchmarks/results/memory")
  a = p.parse_args(argv)
  out = Path(a.out)
  (out / "cells").mkdir(parents=True, exist_ok=True)
  sys.path.insert(0, str(HERE.parent))
  from ttt_jax.io.files import write_json
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
  rows = []
  print(f"{'model':<8} {'frame':>9} {'batch':>5} {'micro':>5} {'remat':>6} {'scan':>5} {'frames':>6} {'peak GB':>8} {'frames/s':>9}")
  for size in a.sizes:
    for micro in a.micro:
      for frames in a.frames:
        scan = "-scan" if a.scan_blocks else ""
        name = f"{size}-{a.width}x{a.height}-b{a.batch}-m{micro}-{a.remat}{scan}-{a.compute_dtype}-t{frames}"
        path = out / "cells" / f"{name}.json"
        if not path.exists():
          argv = [sys.executable, str(HERE / "drivers.py"), "--size", size, "--height", str(a.height),
                  "--width", str(a.width), "--frames", str(frames), "--batch", str(a.batch),
                  "--micro-batches", str(micro), "--remat", a.remat, "--compute-dtype", a.compute_dtype, "--videos", "1", "--repeats", "1",
                  "--modes", "adapting", "--drivers", "scan", "--json", str(path)] + ["--scan-blocks"] * a.scan_blocks
          proc = subprocess.run(argv, env=env, capture_output=True, text=True)
          if proc.returncode != 0:
            rows.append({"cell": name, "error": proc.stderr[-1500:]})
            print(f"{name}: FAILED {proc.stderr[-300:]}")
            continue
        r = json.loads(path.read_text())
        row = {"cell": name, "model": size, "frame_size": [a.height, a.width], "batch": a.batch,
               "micro_batches": micro, "remat": a.remat, "scan_blocks": a.scan_blocks, "compute_dtype": a.compute_dtype, "frames": frames,
               "peak_memory_gb": r["peak_memory_gb"], "peak_memory_is": r["peak_memory_is"],
               "adapting_fps": r["rows"][0]["scan_fps"], "compile_s": r["rows"][0]["scan_compile_s"],
               "device": r["device"]}
        rows.append(row)
        print(f"{size:<8} {a.width:>4}x{a.height:<4} {a.batch:>5} {micro:>5} {a.remat:>6} {str(a.scan_blocks):>5} {frames:>6} "
              f"{row['peak_memory_gb']:8.2f} {row['adapting_fps']:9.3f}", flush=True)
  print(f"wrote {write_json(out / 'memory.json', {'rows': rows})}")
  return rows


if __name__ == "__main__":
  main()
