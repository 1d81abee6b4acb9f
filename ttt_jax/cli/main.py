"""`ttt-jax`: run, demo, pretrain, convert, predict, evaluate, export."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _config(a):
  """CONFIG with its KEY=VALUE overrides, for the config-driven commands."""
  from ttt_jax.cli.config_io import apply_overrides, load_config_file
  return apply_overrides(load_config_file(a.config), a.overrides)


def _run(a):
  from ttt_jax.runner.run import run
  res = run(_config(a), a.out, progress=not a.quiet)
  m = res["metrics"]
  if "scenes" in res:   # a point-cloud run
    print(f"{res['method']}: mIoU {100 * m['miou']:.2f}  wIoU {100 * m['wiou']:.2f}  "
          f"{res['scenes_per_s']:.2f} scenes/s  ({res['scenes']} scenes, {res['skipped_updates']} skipped updates)")
    print(f"wrote {Path(a.out) / 'results.json'}")
    return
  print(f"{res['method']}: mIoU {100 * m['miou']:.2f}  wIoU {100 * m['wiou']:.2f}  "
        f"mVC8 {100 * m['mvc8']:.2f}  mVC16 {100 * m['mvc16']:.2f}  "
        f"{res['fps']:.1f} frames/s  ({res['frames']} frames, {res['skipped_updates']} skipped updates)")
  print(f"wrote {Path(a.out) / 'results.json'}")


def _export(a):
  from ttt_jax.methods.ditta_export import export
  ids = export(_config(a), a.out, progress=not a.quiet)
  print(f"exported {len(ids)} videos to {a.out} (next: sam2-bridge targets --export-dir {a.out} "
        f"--out-dir TARGETS)")


def _demo(a):
  if a.target == "ttt_kd":
    from ttt_jax.demo_ttt_kd import demo_ttt_kd
    demo_ttt_kd(a.out, quick=a.quick)
  else:
    from ttt_jax.demo import demo
    demo(a.out, quick=a.quick)


def _pretrain(a):
  c = _config(a)
  task = c.get("task", "segformer")
  if task == "room_teacher":
    from ttt_jax.train.teacher import train_teacher
    print(f"wrote {train_teacher(c, a.out, progress=not a.quiet)}")
  elif task == "ttt_kd":
    from ttt_jax.train.point_pretrain import pretrain_points
    print(f"wrote {pretrain_points(c, a.out, progress=not a.quiet)}")
  elif task == "cast":
    from ttt_jax.train.cast import run_cast
    res = run_cast(c, a.out, progress=not a.quiet)
    for stage, r in res.items():
      if isinstance(r, dict) and "ap" in r:
        print(f"{stage:<14} mask AP {100 * r['ap']:6.2f}  AP50 {100 * r['ap50']:6.2f}  "
              f"{r['steps_per_s'] or 0:.2f} steps/s")
    print(f"wrote {Path(a.out) / 'results.json'}")
  elif task == "segformer":
    from ttt_jax.train.pretrain import pretrain
    pretrain(c, a.out, progress=not a.quiet)
  else:
    raise ValueError(f"unknown pretraining task {task!r} (config.task); expected segformer, room_teacher, ttt_kd or cast")


def _convert(a):
  if a.arch != "segformer":
    raise SystemExit(f"unknown architecture {a.arch!r}; only 'segformer' is supported")
  from ttt_jax.checkpoint.convert_segformer import convert_hf_folder
  from ttt_jax.checkpoint.model_io import save_model
  variables, cfg = convert_hf_folder(a.src)
  save_model(a.dst, variables, cfg, {"converted_from": str(Path(a.src).absolute())})
  print(f"wrote {a.dst}")


def _predict(a):
  import numpy as np
  from ttt_jax.predict import predict_logits
  frames = np.load(a.input)
  logits = predict_logits(a.checkpoint, frames, batch=a.batch, what=a.input)
  np.save(a.out, logits)
  print(f"wrote {a.out}: {logits.shape} {logits.dtype}")


def _evaluate(a):
  from ttt_jax.evaluate import evaluate_folders, evaluate_instance_folders, format_table
  if a.instances:
    res = evaluate_instance_folders(a.pred_dir, a.gt_dir, num_classes=a.num_classes)
    print(f"mask AP {100 * res['ap']:.2f}  AP50 {100 * res['ap50']:.2f}  ({res['images']} images, "
          f"{res['instances']} instances, {res['detections']} detections)")
  else:
    res = evaluate_folders(a.pred_dir, a.gt_dir, num_classes=a.num_classes)
    print(format_table(res))
  if a.json:
    Path(a.json).write_text(json.dumps(res, indent=1))


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="ttt-jax", description=__doc__)
  sub = p.add_subparsers(dest="cmd", required=True)

  def config_command(name, fn, help):
    c = sub.add_parser(name, help=help)
    c.add_argument("config")
    c.add_argument("overrides", nargs="*", help="dotted KEY=VALUE, e.g. engine.driver=stream")
    c.add_argument("--out", required=True)
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(fn=fn)

  config_command("run", _run, "run a video config: CONFIG [KEY=VALUE ...] --out DIR")
  config_command("export", _export, "frames + warm-up ISS probabilities for `sam2-bridge targets`")
  d = sub.add_parser("demo", help="the main job on the synthetic benchmark")
  d.add_argument("target", nargs="?", default="video", choices=("video", "ttt_kd"),
                 help="video: the video-TTT methods (default); ttt_kd: TTT-KD on synthetic rooms")
  d.add_argument("--out", default="demo_out")
  d.add_argument("--quick", action="store_true", help="fewer, shorter videos")
  d.set_defaults(fn=_demo)
  config_command("pretrain", _pretrain, "train a model (config.task: segformer, room_teacher, ttt_kd, cast)")
  c = sub.add_parser("convert", help="convert SRC (Hugging Face folder) to a model dir DST")
  c.add_argument("arch")
  c.add_argument("src")
  c.add_argument("dst")
  c.set_defaults(fn=_convert)
  pr = sub.add_parser("predict", help="logits of a model on FRAMES.npy (uint8 T x H x W x 3)")
  pr.add_argument("--checkpoint", required=True)
  pr.add_argument("--input", required=True)
  pr.add_argument("--out", required=True)
  pr.add_argument("--batch", type=int, default=8)
  pr.set_defaults(fn=_predict)
  e = sub.add_parser("evaluate", help="score VSPW-style PNG predictions (or, with --instances, instance "
                     "predictions by mask AP) against ground truth")
  e.add_argument("pred_dir")
  e.add_argument("gt_dir")
  e.add_argument("--num-classes", type=int, default=None)
  e.add_argument("--json", default=None)
  e.add_argument("--instances", action="store_true",
                 help="PRED_DIR/<image_id>.npz instance predictions; GT_DIR: <image_id>.npz or a Cityscapes root")
  e.set_defaults(fn=_evaluate)
  return p


def main(argv=None):
  a = parser().parse_args(argv)
  from ttt_jax import compile_cache
  if not os.environ.get("TTT_JAX_TEST"):  # the tests set their own cache
    compile_cache.enable()
  try:
    a.fn(a)
  except (ValueError, FileNotFoundError) as e:
    print(f"ttt-jax {a.cmd}: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
