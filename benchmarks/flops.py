"""FLOPs per frame of online TTT-MAE (XLA's cost analysis), as a table and JSON, and
the rate each per-frame time would need: what an accelerator's frames/s mean.

  python benchmarks/flops.py                                   # B0 / B2 / B5 at 512 x 512 and 864 x 480
  python benchmarks/flops.py --sizes b0 --frames 480x864 --batch 32
  python benchmarks/flops.py --pretrain configs/pretrain_synthetic.py:b2 configs/pretrain_synthetic.py:b2,joint_bn

Per frame: predict-only is one prediction; adapting adds one optimizer step on a
batch of --batch samples (the loss and its gradient, counted on one sample and
multiplied: the count is linear in the batch, tests/test_profiling.py). Counted
on random weights of each size, unscanned and in one micro-batch, float32 (the
arithmetic does not depend on them). `rate_for_goal_tflops` is the sustained
rate at which an adapting frame takes --goal-s seconds (issue 14's goal for B5
at 864 x 480: 10x the reference's 4.1 s per frame, so 0.41 s).

With --pretrain, the FLOPs of `ttt-jax pretrain` runs instead: per step (both
passes, their gradient, the optimizer; `benchmarks/profiling.pretrain_step_flops`),
in all (`steps` of the config), and the sustained rate at which the whole run
takes --budget-s seconds: whether a run fits a device lease.
"""
from __future__ import annotations

import argparse

from profiling import config_frame_flops, pretrain_step_flops  # benchmarks/ is first on sys.path


def pretrain_rows(paths, budget_s) -> list[dict]:
  """One row per pretraining config (`FILE.py[:VARIANT]`)."""
  from ttt_jax.cli.config_io import load_config_file
  rows = []
  for path in paths:
    c = load_config_file(path)
    step = pretrain_step_flops(c)
    rows.append({"config": path, "model": c.model.size, "image_size": [c.data.height, c.data.width],
                 "batch": c.batch_size, "steps": c.steps, "step_tflop": step / 1e12,
                 "total_pflop": step * c.steps / 1e15, "rate_for_budget_tflops": step * c.steps / budget_s / 1e12})
    r = rows[-1]
    print(f"{path:<44} {r['model']:<5} {c.data.height}x{c.data.width} batch {c.batch_size}: {1e3 * r['step_tflop']:7.4g} GFLOP "
          f"a step x {c.steps} = {r['total_pflop']:6.3g} PFLOP -> {r['rate_for_budget_tflops']:6.3g} TFLOP/s "
          f"for {budget_s:g} s", flush=True)
  return rows


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--sizes", nargs="+", default=["b0", "b2", "b5"])
  p.add_argument("--frames", nargs="+", default=["512x512", "480x864"], help="HxW")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--goal-s", type=float, default=0.41, help="seconds per adapting frame")
  p.add_argument("--pretrain", nargs="+", default=None, metavar="CONFIG",
                 help="count these pretraining configs (FILE.py[:VARIANT]) instead of video frames")
  p.add_argument("--budget-s", type=float, default=300.0, help="with --pretrain: seconds a whole run may take")
  p.add_argument("--json", default=None,
                 help="default: benchmarks/results/flops.json (pretrain_flops.json with --pretrain)")
  a = p.parse_args(argv)
  from ttt_jax.io.files import write_json
  from ttt_jax.io.versions import versions
  if a.pretrain:
    out = {"budget_s": a.budget_s, "counted_by": "XLA cost analysis of the lowered step",
           "rows": pretrain_rows(a.pretrain, a.budget_s), "versions": versions()}
    print(f"wrote {write_json(a.json or 'benchmarks/results/pretrain_flops.json', out)}")
    return out

  from ttt_jax.data.synthetic import VideoSpec, make_video
  from ttt_jax.methods.defaults import video_config
  from ttt_jax.methods.model_source import source_model

  rows = []
  for size in a.sizes:
    c = video_config("mae")
    c.model.checkpoint, c.model.size = "random", size
    c.method.batch_size, c.method.window = a.batch, 2
    model = source_model(c)   # once per size: the weights do not depend on the frame size
    for hw in a.frames:
      h, w = (int(v) for v in hw.split("x"))
      video = make_video(VideoSpec(seed=1, num_frames=2, height=h, width=w))[0]
      f = config_frame_flops(c, model, video)
      adapt = f["per_frame"]
      rows.append({"model": size, "frame_size": [h, w], "predict_gflop": f["predict"] / 1e9,
                   "loss_grad_per_sample_gflop": f["loss_grad_per_sample"] / 1e9,
                   "adapting_tflop": adapt / 1e12, "rate_for_goal_tflops": adapt / a.goal_s / 1e12})
      r = rows[-1]
      print(f"{size:<4} {h:>4}x{w:<4} predict {r['predict_gflop']:8.1f} GFLOP  adapting (batch {a.batch}) "
            f"{r['adapting_tflop']:7.2f} TFLOP  -> {r['rate_for_goal_tflops']:6.1f} TFLOP/s at {a.goal_s} s/frame",
            flush=True)
  out = {"batch": a.batch, "steps_per_frame": c.method.steps_per_frame, "goal_s_per_frame": a.goal_s,
         "counted_by": "XLA cost analysis of the lowered programs (jax.stages.Lowered.cost_analysis)",
         "rows": rows, "versions": versions()}
  print(f"wrote {write_json(a.json or 'benchmarks/results/flops.json', out)}")
  return out


if __name__ == "__main__":
  main()
