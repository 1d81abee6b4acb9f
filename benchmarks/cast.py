"""CAST on the synthetic instance benchmark: the paper's findings, in direction.

  python benchmarks/cast.py                              # held-out seeds 1 2 3
  python benchmarks/cast.py --seeds 0 --scale 0.25       # a quick look on the tuning seed
  python benchmarks/cast.py --seeds 1 2 3 --scale 0.4 --foundation-scale 3 --set teacher.lr=1e-3
                           # the README's table (2 cores: foundation teacher 1 h 50 min and
                           # student 33 min, each alone with --foundation only-teacher /
                           # only-student; then the seeds side by side as separate processes,
                           # each with --seeds S, 70 min for three; then this command, which
                           # reads the finished stages and writes the table)
  python benchmarks/cast.py --variant tiny --seeds 1 --work /tmp/cast_smoke --foundation no   # minutes

First, once for all seeds (unless --foundation no): WORK/foundation_teacher/ and
WORK/foundation_student/, the teacher's and the student's architecture trained on
generic shapes (configs/cast.py:foundation), the stand-in for the paper's DINOv2
start; every stage below starts from them (their class heads fresh).
Per seed (data seed = run seed), under WORK/seed<s>/:
  main/            all stages as configured: teacher_sup, teacher_self (with the pixel
                   loss), student (L_sup + L_semi + L_pxl), refine
  teacher_nopxl/   teacher_self without the pixel loss (from main's teacher_sup)
  student_<terms>/ the loss-term ablation of the student, from main's adapted teacher:
                   sup (L_sup only), sup_semi (+ pseudo-labels), sup_pxl (+ pixel loss
                   only); all three is main's student
  student_uniform/ the student with uniformly drawn negatives instead of dissimilarity
Tables: mask AP and AP50 (x 100, mean +- std over seeds) and training steps/s of every
model. Every run resumes where it stopped (finished stages are read, not rerun).
Writes benchmarks/results/cast.json (or --json).
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from ttt_jax import compile_cache
from ttt_jax.cli.config_io import apply_overrides, load_config_file
from ttt_jax.io.files import write_json
from ttt_jax.io.versions import versions
from ttt_jax.train.cast import run_cast

ROOT = Path(__file__).resolve().parent.parent

# name: (directory, stage it reads, stage to run, overrides)
ROWS = {
    "teacher w/o pixel loss": ("teacher_nopxl", "teacher_sup", "teacher_self", ["teacher.lambda_pxl=0.0"]),
    "teacher with pixel loss": ("main", None, "teacher_self", []),
    "student, semi-supervised": ("main", None, "student", []),
    "student, refined": ("main", None, "refine", []),
    "student: L_sup only": ("student_sup", "teacher_self", "student", ["student.lambda_semi=0.0",
                                                                       "student.lambda_pxl=0.0"]),
    "student: + pseudo-labels": ("student_sup_semi", "teacher_self", "student", ["student.lambda_pxl=0.0"]),
    "student: + pixel loss only": ("student_sup_pxl", "teacher_self", "student", ["student.lambda_semi=0.0"]),
    "student: all three": ("main", None, "student", []),
    "student: uniform negatives": ("student_uniform", "teacher_self", "student", ["contrast.sampler=uniform"]),
}


def config(variant: str, seed: int, scale: float, overrides: list[str]):
  c = load_config_file(str(ROOT / "configs" / "cast.py") + (f":{variant}" if variant else ""))
  c.seed = c.data.seed = seed
  if scale != 1.0:
    for r, key in (("teacher", "steps_sup"), ("teacher", "steps"), ("student", "steps"), ("refine", "steps")):
      c[r][key] = max(1, int(round(c[r][key] * scale)))
  return apply_overrides(c, overrides)


def foundation(work: Path, role: str, scale: float, progress: bool) -> tuple[Path, dict]:
  """The `role`'s foundation model (configs/cast.py:foundation[_student], data seed 0 of
  the generic shapes, shared by every benchmark seed as DINOv2 is), trained once."""
  variant = "foundation" if role == "teacher" else "foundation_student"
  out = work / f"foundation_{role}"
  res = run_cast(config(variant, 0, scale, []), out, progress=progress)
  return out / "teacher_sup" / "model", res["teacher_sup"]


def run_row(work: Path, variant, seed, scale, row, init: list[str]) -> dict:
  """One table row's model; `init` holds the foundation paths and the `--set` overrides
  (a row's own overrides come after them, so the ablations stay what they are)."""
  directory, reads, stage, over = row
  out = work / f"seed{seed}" / directory
  if reads is not None and not (out / reads / "model").is_dir():   # share the stage it starts from
    src = work / f"seed{seed}" / "main" / reads
    shutil.copytree(src, out / reads, dirs_exist_ok=True)
  c = config(variant, seed, scale, init + over + [f"stage={'all' if directory == 'main' else stage}"])
  return run_cast(c, out, progress=False)[stage]


def summary(values):
  a = np.asarray(values, float)
  return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "values": a.tolist()}


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="data and run seeds (0 = tuning)")
  p.add_argument("--variant", default="", help="configs/cast.py variant ('' = the embedded default)")
  p.add_argument("--scale", type=float, default=1.0, help="multiplies every stage's steps")
  p.add_argument("--work", default=str(ROOT / "benchmarks" / "work_cast"))
  p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "cast.json"))
  p.add_argument("--foundation", choices=("yes", "no", "only-teacher", "only-student"), default="yes",
                 help="start teacher and student from foundation models trained on generic shapes (default); "
                      "'no': from random weights; 'only-*': train that foundation model and stop (to train the "
                      "two side by side before the seeds)")
  p.add_argument("--foundation-scale", type=float, default=1.0, help="multiplies the foundation's steps")
  p.add_argument("--set", nargs="*", default=[], help="config overrides for every seed's stages, key=value "
                 "(not the foundation models), e.g. teacher.lr=1e-3")
  a = p.parse_args()
  compile_cache.enable()
  work = Path(a.work)
  t0 = time.perf_counter()
  init, found = [], {}
  if a.foundation != "no":
    for role in ("teacher", "student"):
      if a.foundation in ("yes", f"only-{role}"):
        path, found[role] = foundation(work, role, a.foundation_scale, progress=True)
        init.append(f"{role}.init_model={path}")
        print(f"foundation {role}: mask AP {100 * found[role]['ap']:.2f}, AP50 {100 * found[role]['ap50']:.2f} "
              "on generic shapes")
    if a.foundation.startswith("only-"):
      return
  init += a.set
  per_seed = {name: [] for name in ROWS}
  for seed in a.seeds:
    run_row(work, a.variant, seed, a.scale, ROWS["student, refined"], init)   # main first: the others start from it
    for name, row in ROWS.items():
      per_seed[name].append(run_row(work, a.variant, seed, a.scale, row, init))
  table = {name: {"ap": summary([100 * r["ap"] for r in rs]), "ap50": summary([100 * r["ap50"] for r in rs]),
                  "steps_per_s": summary([r["steps_per_s"] or 0.0 for r in rs])} for name, rs in per_seed.items()}
  print(f"CAST, synthetic instances, seeds {a.seeds} (variant {a.variant!r}, steps x {a.scale}"
        f"{''.join(', ' + o for o in a.set)})")
  print(f"{'model':<30} {'mask AP':>15} {'AP50':>15} {'steps/s':>8}")
  for name, r in table.items():
    print(f"{name:<30} {r['ap']['mean']:7.2f} +- {r['ap']['std']:4.2f} {r['ap50']['mean']:7.2f} +- "
          f"{r['ap50']['std']:4.2f} {r['steps_per_s']['mean']:8.2f}")
  write_json(a.json, {"seeds": a.seeds, "variant": a.variant, "scale": a.scale, "overrides": a.set, "table": table,
                      "foundation": {r: {"ap": 100 * f["ap"], "ap50": 100 * f["ap50"], "steps": f["steps_run"]}
                                     for r, f in found.items()},
                      "seconds": time.perf_counter() - t0, "versions": versions(),
                      "config": config(a.variant, a.seeds[0], a.scale, init).to_dict()})
  print(f"wrote {a.json}")


if __name__ == "__main__":
  main()
