"""What rematerialisation and scanned stages save: the bytes XLA plans for the
adapting loss and its gradient, per sample and fixed, as a table and JSON.

  python benchmarks/remat.py                                  # small / B0 / B2 at 864 x 480
  python benchmarks/remat.py --sizes b5 --frames 512x512
  python benchmarks/remat.py --sizes small --scans scanned   # scanned stages only

Each cell compiles online TTT-MAE's loss-and-gradient on 1 and 2 samples from
shapes alone (`ttt_jax.engine.microbatch.compiled_step`; arguments, outputs and
temporaries of the compiled program, what `method.memory_budget_gb` reads; nothing
runs) for `model.remat` none / blocks / blocks_dots, with stages unrolled and
scanned (`model.scan_blocks`). `per_sample_gb` is the difference of the two,
`fixed_gb` the rest (weights, gradients, the program's own buffers); `matmuls`
counts the dot and convolution ops of the one-sample program (a loop body once),
so recomputation that survived compilation shows as more of them. On the CPU
backend remat of unrolled blocks saves nothing: XLA's CPU compiler removes the
optimisation barriers jax.checkpoint sets before it schedules, so the
recomputation may run anywhere (it does recompute: more matmuls, same bytes); in
a scan it sits in the backward loop's body and can only run there. Compare
`benchmarks/memory.py` for what a run then holds (resident set or device peak).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import time


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--sizes", nargs="+", default=["small", "b0", "b2"],
                 help="'small' (shipped weights) or SegFormer sizes (random weights)")
  p.add_argument("--frames", nargs="+", default=["480x864"], help="HxW")
  p.add_argument("--remats", nargs="+", default=["none", "blocks", "blocks_dots"])
  p.add_argument("--scans", nargs="+", choices=["unrolled", "scanned"], default=["unrolled", "scanned"],
                 help="stages unrolled and/or scanned (model.scan_blocks)")
  p.add_argument("--json", default="benchmarks/results/remat.json")
  a = p.parse_args(argv)

  import jax

  from profiling import step_inputs  # benchmarks/ is the script's folder, first on sys.path
  from ttt_jax.data.synthetic import VideoSpec, make_video
  from ttt_jax.engine.microbatch import GB, compiled_step, planned_bytes
  from ttt_jax.io.files import write_json
  from ttt_jax.io.versions import versions
  from ttt_jax.methods.defaults import video_config
  from ttt_jax.methods.model_source import source_model
  from ttt_jax.runner.run import make_runner

  frames = [tuple(int(v) for v in hw.split("x")) for hw in a.frames]
  scans = [name == "scanned" for name in a.scans]
  videos = {hw: make_video(VideoSpec(seed=1, num_frames=2, height=hw[0], width=hw[1]))[0] for hw in frames}
  rows = []
  print(f"{'model':<6} {'frame':>9} {'scan':>5} {'remat':>11} {'per sample GB':>13} {'fixed GB':>9} {'matmuls':>7} {'compile s':>9}")
  for size in a.sizes:
    c = video_config("mae")
    c.model.checkpoint = "builtin" if size == "small" else "random"
    c.model.size = size
    c.method.batch_size, c.method.window = 2, 2
    loaded = source_model(c)  # once per size: remat and scanning are compute options of its cfg
    for (h, w), (scan, remat) in itertools.product(frames, itertools.product(scans, a.remats)):
      model = dataclasses.replace(loaded, cfg=dataclasses.replace(loaded.cfg, remat=remat, scan_blocks=scan))
      runner = make_runner(c, model=model)[0]
      s, ctx, data_T = step_inputs(runner, videos[h, w])
      sample = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), data_T)
      t0 = time.perf_counter()
      programs = [compiled_step(runner.plan.learner.loss_fn, s.trainable, ctx, sample, n) for n in (1, 2)]
      one, two = (planned_bytes(prog) for prog in programs)
      text = programs[0].as_text()
      row = {"model": size, "frame_size": [h, w], "scan_blocks": scan, "remat": remat,
             "per_sample_gb": (two - one) / GB, "fixed_gb": (2 * one - two) / GB,
             "compile_s": time.perf_counter() - t0,
             "matmuls": text.count(" dot(") + text.count(" convolution(")}
      rows.append(row)
      print(f"{size:<6} {h:>4}x{w:<4} {str(scan):>5} {remat:>11} {row['per_sample_gb']:13.3f} "
            f"{row['fixed_gb']:9.3f} {row['matmuls']:7d} {row['compile_s']:9.1f}", flush=True)
  out = {"measured_by": "XLA memory analysis of the compiled loss-and-gradient (1 and 2 samples)",
         "device": str(jax.devices()[0]), "rows": rows, "versions": versions()}
  print(f"wrote {write_json(a.json, out)}")
  return out


if __name__ == "__main__":
  main()
