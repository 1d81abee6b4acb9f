"""Which shifts a source model loses to, and what TTT-MAE and norm adapt win back.

For each source model, five single-type shifts (each video under one type at a
constant severity) on tuning seeds that no other benchmark scores. Per type:
main task mIoU, then online TTT-MAE (the demo's settings and an aggressive
variant) and norm adapt as mIoU points over main task. Then the margin online -
main on the benchmark's own mixed shifts for the same seeds.

  python benchmarks/source_probe.py                               # the shipped model
  ttt-jax pretrain configs/pretrain_synthetic.py photometric=True --out /tmp/src_jitter
  ttt-jax pretrain configs/pretrain_synthetic.py photometric=True mae_steps=1500 \\
      encoder_lr_mult=0.0 --out /tmp/src_probe
  python benchmarks/source_probe.py --checkpoints builtin /tmp/src_jitter/model /tmp/src_probe/model

Writes benchmarks/results/source_probe.json.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np

from ttt_jax import compile_cache
from ttt_jax.data import synthetic
from ttt_jax.io.files import write_json
from ttt_jax.io.versions import versions

from video_ttt import one  # benchmarks/ is the script's folder

VARIANTS = {  # label -> (method, overrides)
    "online": ("online_ttt_mae", {}),
    "online aggressive": ("online_ttt_mae", {"method.optimizer.lr_groups": (), "method.steps_per_frame": 3}),
    "norm_adapt": ("norm_adapt", {}),
}


def single_type_curves(index: int, severity: float):
  def curves(rng, t, max_severity=1.0):
    s = np.zeros((t, len(synthetic.SHIFTS)), np.float32)
    s[:, index] = severity * max_severity
    return s
  return curves


def probe(ck, a, tmp):
  # Runs resume from their folder, so every video set gets its own (`part`).
  runs = lambda name, seeds, over, part: [
      100 * one(name, s, a, Path(tmp) / part, **{"model.checkpoint": ck, **over})["miou"] for s in seeds]
  out = {"per_shift": {}, "mixed": {}}
  for i, shift in enumerate(synthetic.SHIFTS):
    with mock.patch.object(synthetic, "shift_curves", single_type_curves(i, a.severity)):
      main = float(np.mean(runs("main_task", a.seeds[:1], {}, shift)))
      row = {"main": main}
      for label, (name, over) in VARIANTS.items():
        row[label] = float(np.mean(runs(name, a.seeds[:1], over, shift))) - main
    out["per_shift"][shift] = row
    print(f"  {shift:<6} main {main:6.2f}  " + "  ".join(f"{k} {row[k]:+6.2f}" for k in VARIANTS), flush=True)
  main = runs("main_task", a.seeds, {}, "mixed")
  out["mixed"]["main"] = main
  for label, (name, over) in VARIANTS.items():
    d = np.array(runs(name, a.seeds, over, "mixed")) - np.array(main)
    out["mixed"][label] = d.tolist()
  print("  mixed  main " + " ".join(f"{m:.2f}" for m in main) + "  "
        + "  ".join(f"{k} " + "/".join(f"{x:+.2f}" for x in out["mixed"][k]) for k in VARIANTS), flush=True)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--checkpoints", nargs="+", default=["builtin"])
  p.add_argument("--seeds", type=int, nargs="+", default=[5000, 6000], help="tuning seeds; the first "
                 "also renders the single-type videos")
  p.add_argument("--severity", type=float, default=0.7)
  p.add_argument("--videos", type=int, default=4)
  p.add_argument("--frames", type=int, default=48)
  p.add_argument("--json", default="benchmarks/results/source_probe.json")
  a = p.parse_args(argv)
  compile_cache.enable()
  res = {}
  with tempfile.TemporaryDirectory() as tmp:
    for n, ck in enumerate(a.checkpoints):
      print(f"{ck}: mIoU (main) and points over main, severity {a.severity}, seed {a.seeds[0]}", flush=True)
      res[ck] = probe(ck, a, Path(tmp) / str(n))
  out = write_json(a.json, {"seeds": a.seeds, "severity": a.severity, "videos": a.videos, "frames": a.frames,
                            "variants": {k: [n, o] for k, (n, o) in VARIANTS.items()}, "models": res,
                            "versions": versions()})
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
