"""TTT-KD on the synthetic paired rooms: the paper's findings, in direction.

  python benchmarks/ttt_kd.py                         # held-out seeds 1 2 3, 8 scenes each
  python benchmarks/ttt_kd.py --seeds 1 --scenes 4 --no-sweeps   # a quick look
  python benchmarks/ttt_kd.py --sweep-lr --seeds 0    # TTT-KD's lr on the tuning seed

The shipped point model was trained on the 'office' rooms (S3DIS-like); 'in
distribution' tests on held-out office rooms, 'out of distribution' on 'home' rooms
(ScanNet-like: other layouts, furniture, light, noise, density and holes), as the
paper's S3DIS -> ScanNet. Tables:

1. source only, TTT-KD (per scene, `method.steps_per_frame` steps, reset), Tent and
   recomputed BN statistics, in and out of distribution: point mIoU, mean +- std
   over held-out seeds, and scenes/s;
2. the steps sweep (1 .. 200) and the images-per-scene sweep (1, 2, 5, all 10), out of
   distribution, first seed;
3. TTT-KD-O (weights carried over the stream of a seed's scenes) at strides 1, 5, 10,
   20, out of distribution.

Teacher features (the shipped stand-in, not DINOv2) are cached once per scene under
the work folder; scenes/s counts the runs with the features cached and compilation
excluded. Writes benchmarks/results/ttt_kd.json.
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np

from ttt_jax import compile_cache
from ttt_jax.cli.config_io import load_config_file
from ttt_jax.io.files import write_json
from ttt_jax.io.versions import versions
from ttt_jax.runner.programs import ProgramCache
from ttt_jax.runner.run import run

ROOT = Path(__file__).resolve().parent.parent
DOMAINS = {"in_dist": "office", "out_of_dist": "home"}
MAIN = ("point_source", "ttt_kd", "point_tent", "point_norm")


def config(name: str, *, dataset: str, seed: int, scenes: int, features: Path, **over):
  c = load_config_file(str(ROOT / "configs" / f"{name}.py"))
  c.data.dataset, c.data.seed, c.data.num_scenes = dataset, seed, scenes
  c.method.ttt_kd.features_dir = str(features)
  c.update_from_flattened_dict(over)
  return c


def one(c, work: Path, programs: ProgramCache) -> dict:
  out = work / f"{c.method.name}_{c.data.dataset}_{c.data.seed}_{abs(hash(c.to_json())) % 10**8}"
  r = run(c, out, progress=False, programs=programs)
  return {"miou": r["metrics"]["miou"], "scenes_per_s": r["scenes_per_s"], "scenes": r["scenes"],
          "compile_seconds": r["compile_seconds"], "iou_per_class": r["iou_per_class"]}


def agg(runs: list[dict]) -> dict:
  v = np.array([r["miou"] for r in runs])
  s = np.array([r["scenes_per_s"] for r in runs])
  return {"miou": float(v.mean()), "miou_std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
          "per_seed_miou": v.tolist(), "scenes_per_s": float(s.mean())}


def fmt(x: dict) -> str:
  return f"{100 * x['miou']:6.2f} +- {100 * x['miou_std']:4.2f}"


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
  ap.add_argument("--scenes", type=int, default=8)
  ap.add_argument("--steps", type=int, nargs="+", default=[1, 5, 20, 50, 100, 200])
  ap.add_argument("--views", type=int, nargs="+", default=[1, 2, 5, 0])
  ap.add_argument("--strides", type=int, nargs="+", default=[1, 5, 10, 20])
  ap.add_argument("--stream-scenes", type=int, default=20)
  ap.add_argument("--no-sweeps", action="store_true")
  ap.add_argument("--sweep-lr", action="store_true", help="TTT-KD's lr x steps on the given (tuning) seeds")
  ap.add_argument("--lrs", type=float, nargs="+", default=[1e-5, 3e-5, 1e-4, 3e-4])
  ap.add_argument("--bn", nargs="+", default=["source", "scene"], help="--sweep-lr: method.ttt_kd.bn values")
  ap.add_argument("--work", default="")
  ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ttt_kd.json"))
  a = ap.parse_args()
  compile_cache.enable()
  work = Path(a.work or tempfile.mkdtemp(prefix="ttt_kd_bench_"))
  features = work / "features"
  programs = ProgramCache()
  t0 = time.perf_counter()
  res: dict = {"seeds": a.seeds, "scenes_per_seed": a.scenes, "versions": versions(),
               "teacher": "the shipped stand-in (ttt_jax/assets/room_teacher), not DINOv2"}

  if a.sweep_lr:   # on tuning seeds only: mean gain over source, in and out of distribution
    rows = {}
    src = {dom: agg([one(config("point_source", dataset=ds, seed=s, scenes=a.scenes, features=features),
                         work, programs) for s in a.seeds]) for dom, ds in DOMAINS.items()}
    print("source only: " + "  ".join(f"{d} {fmt(src[d])}" for d in DOMAINS))
    for bn, lr, steps in itertools.product(a.bn, a.lrs, (20, 100)):
        key = f"bn={bn} lr={lr:g} steps={steps}"
        rows[key] = {dom: agg([one(config("ttt_kd", dataset=ds, seed=s, scenes=a.scenes, features=features,
                                          **{"method.optimizer.lr": lr, "method.steps_per_frame": steps,
                                             "method.ttt_kd.bn": bn}),
                                   work, programs) for s in a.seeds]) for dom, ds in DOMAINS.items()}
        print(f"{key:<32}" + "  ".join(f"{d} {fmt(rows[key][d])}" for d in DOMAINS), flush=True)
    write_json(Path(a.out).with_name("ttt_kd_lr_sweep.json"), {"rows": rows, "source": src, **res})
    return

  main_rows: dict = {}
  print(f"{'method':<14}" + "".join(f"{d:>22}" for d in DOMAINS) + f"{'scenes/s':>10}")
  for name in MAIN:
    main_rows[name] = {}
    for dom, ds in DOMAINS.items():
      main_rows[name][dom] = agg([one(config(name, dataset=ds, seed=s, scenes=a.scenes, features=features),
                                      work, programs) for s in a.seeds])
    print(f"{name:<14}" + "".join(f"{fmt(main_rows[name][d]):>22}" for d in DOMAINS)
          + f"{main_rows[name]['out_of_dist']['scenes_per_s']:10.2f}", flush=True)
  res["main"] = main_rows
  gain = {d: main_rows["ttt_kd"][d]["miou"] - main_rows["point_source"][d]["miou"] for d in DOMAINS}
  res["ttt_kd_gain"] = gain
  print(f"TTT-KD - source: in distribution {100 * gain['in_dist']:+.2f}, out of distribution "
        f"{100 * gain['out_of_dist']:+.2f}")

  if not a.no_sweeps:
    s0 = a.seeds[0]
    res["steps_sweep"] = {}
    print(f"\nsteps per scene (out of distribution, seed {s0})")
    for n in a.steps:
      r = one(config("ttt_kd", dataset="home", seed=s0, scenes=a.scenes, features=features,
                     **{"method.steps_per_frame": n}), work, programs)
      res["steps_sweep"][n] = r
      print(f"  {n:4d} steps: mIoU {100 * r['miou']:6.2f}  {r['scenes_per_s']:6.2f} scenes/s", flush=True)
    res["views_sweep"] = {}
    print(f"\nimages per scene (out of distribution, seed {s0})")
    for v in a.views:
      r = one(config("ttt_kd", dataset="home", seed=s0, scenes=a.scenes, features=features,
                     **{"method.ttt_kd.max_views": v}), work, programs)
      res["views_sweep"][v or "all"] = r
      print(f"  {v or 'all':>4} images: mIoU {100 * r['miou']:6.2f}", flush=True)
    res["online"] = {}
    print(f"\nTTT-KD-O over a stream of {a.stream_scenes} scenes (out of distribution, seed {s0})")
    base = one(config("point_source", dataset="home", seed=s0, scenes=a.stream_scenes, features=features),
               work, programs)
    res["online"]["source"] = base
    print(f"  source only: mIoU {100 * base['miou']:6.2f}")
    for st in a.strides:
      r = one(config("ttt_kd_o", dataset="home", seed=s0, scenes=a.stream_scenes, features=features,
                     **{"method.stride": st}), work, programs)
      res["online"][f"stride_{st}"] = r
      print(f"  stride {st:3d}: mIoU {100 * r['miou']:6.2f}  {r['scenes_per_s']:6.2f} scenes/s", flush=True)
  res["seconds"] = time.perf_counter() - t0
  write_json(a.out, res)
  print(f"\nwrote {a.out} ({res['seconds']:.0f} s)")


if __name__ == "__main__":
  main()
