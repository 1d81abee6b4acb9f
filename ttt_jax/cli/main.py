"""`ttt-jax`: run, demo, pretrain, convert, predict, evaluate, export."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _run(a):
  from ttt_jax.cli.config_io import apply_overrides, load_config_file
  from ttt_jax.methods.video_run import run
  cfg = apply_overrides(load_config_file(a.config), a.overrides)
  res = run(cfg, a.out, progress=not a.quiet)
  m = res["metrics"]
  print(f"{res['method']}: mIoU {100 * m['miou']:.2f}  wIoU {100 * m['wiou']:.2f}  "
        f"mVC8 {100 * m['mvc8']:.2f}  mVC16 {100 * m['mvc16']:.2f}  "
        f"{res['fps']:.1f} frames/s  ({res['frames']} frames, {res['skipped_updates']} skipped updates)")
  print(f"wrote {Path(a.out) / 'results.json'}")


def _export(a):
  from ttt_jax.cli.config_io import apply_overrides, load_config_file
  from ttt_jax.methods.ditta_export import export
  cfg = apply_overrides(load_config_file(a.config), a.overrides)
  ids = export(cfg, a.out, progress=not a.quiet)
  print(f"exported {len(ids)} videos to {a.out} (next: sam2-bridge targets --export-dir {a.out} "
        f"--out-dir TARGETS)")


def _demo(a):
  from ttt_jax.demo import demo
  demo(a.out, quick=a.quick)


def _pretrain(a):
  from ttt_jax.cli.config_io import apply_overrides, load_config_file
  from ttt_jax.train.pretrain import pretrain
  cfg = apply_overrides(load_config_file(a.config), a.overrides)
  pretrain(cfg, a.out, progress=not a.quiet)


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
  from ttt_jax.evaluate import evaluate_folders, format_table
  res = evaluate_folders(a.pred_dir, a.gt_dir, num_classes=a.num_classes)
  print(format_table(res))
  if a.json:
    Path(a.json).write_text(json.dumps(res, indent=1))


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="ttt-jax", description=__doc__)
  sub = p.add_subparsers(dest="cmd", required=True)
  r = sub.add_parser("run", help="run a video config: CONFIG [KEY=VALUE ...] --out DIR")
  r.add_argument("config")
  r.add_argument("overrides", nargs="*", help="dotted KEY=VALUE, e.g. engine.driver=stream")
  r.add_argument("--out", required=True)
  r.add_argument("--quiet", action="store_true")
  r.set_defaults(fn=_run)
  x = sub.add_parser("export", help="frames + warm-up ISS probabilities for `sam2-bridge targets`")
  x.add_argument("config")
  x.add_argument("overrides", nargs="*")
  x.add_argument("--out", required=True)
  x.add_argument("--quiet", action="store_true")
  x.set_defaults(fn=_export)
  d = sub.add_parser("demo", help="the main job on the synthetic benchmark")
  d.add_argument("--out", default="demo_out")
  d.add_argument("--quick", action="store_true", help="fewer, shorter videos")
  d.set_defaults(fn=_demo)
  t = sub.add_parser("pretrain", help="joint main + reconstruction training on source stills")
  t.add_argument("config")
  t.add_argument("overrides", nargs="*")
  t.add_argument("--out", required=True)
  t.add_argument("--quiet", action="store_true")
  t.set_defaults(fn=_pretrain)
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
  e = sub.add_parser("evaluate", help="score VSPW-style PNG predictions against ground truth")
  e.add_argument("pred_dir")
  e.add_argument("gt_dir")
  e.add_argument("--num-classes", type=int, default=None)
  e.add_argument("--json", default=None)
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
