"""`ttt-jax demo ttt_kd`: TTT-KD and its baselines on held-out synthetic rooms, in
minutes on a CPU.

Loads the shipped point model (trained on the 'office' rooms by `ttt-jax pretrain
configs/pretrain_ttt_kd.py`) and the shipped stand-in teacher (not DINOv2), runs
`configs/<method>.py:demo` for source only, TTT-KD, TTT-KD-O (stride 5), Tent and
recomputed BN statistics on held-out office rooms (in distribution) and home rooms
(out of distribution), prints point mIoU and scenes/s, and writes
`OUT/results.json` and `OUT/<method>_<dataset>/` (each run's results and predictions).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ttt_jax.data.scenes import load_scenes
from ttt_jax.demo import demo_config
from ttt_jax.io.files import write_json
from ttt_jax.io.versions import versions
from ttt_jax.runner.programs import ProgramCache
from ttt_jax.runner.run import make_runner, run

METHODS = ("point_source", "ttt_kd", "ttt_kd_o", "point_tent", "point_norm")
DATASETS = {"office": "in distribution", "home": "out of distribution"}


def demo_ttt_kd(out_dir="demo_out", *, quick: bool = False) -> dict:
  out = Path(out_dir) / "ttt_kd"
  t0 = time.perf_counter()
  configs = {}
  for name in METHODS:
    for ds in DATASETS:
      c = demo_config(name, quick=False)
      c.data.dataset = ds
      if quick:
        c.data.num_scenes = 4
      c.method.ttt_kd.features_dir = str(out / "features")   # the teacher runs once per scene
      configs[name, ds] = c
  programs = ProgramCache()
  runners = {}
  for c in configs.values():
    r, _ = make_runner(c, programs=programs)
    runners.setdefault(r.plan.program_key, r)
  sid, scene = next(iter(load_scenes(configs["point_source", "office"].data)))
  print(f"compiling {len(runners)} programs ...", flush=True)
  with ThreadPoolExecutor(max_workers=len(runners)) as pool:
    list(pool.map(lambda r: r.precompile(sid, scene), runners.values()))
  rows = {key: run(c, out / f"{key[0]}_{key[1]}", progress=True, programs=programs) for key, c in configs.items()}
  c = configs["ttt_kd", "office"]
  print(f"\nSynthetic rooms, {c.data.num_scenes} held-out scenes per dataset (seed {c.data.seed}), "
        f"{c.engine.num_points} points at most; source model trained on 'office'; TTT-KD "
        f"{c.method.steps_per_frame} steps per scene; scenes/s excludes compilation")
  head = f"{'method':<14}" + "".join(f"{d + ' mIoU':>18}" for d in DATASETS) + f"{'scenes/s':>10}"
  lines = [head, "-" * len(head)]
  for name in METHODS:
    lines.append(f"{name:<14}" + "".join(f"{100 * rows[name, d]['metrics']['miou']:18.2f}" for d in DATASETS)
                 + f"{rows[name, 'home']['scenes_per_s']:10.2f}")
  print("\n".join(lines))
  summary = {"benchmark": "rooms", "scenes_per_dataset": c.data.num_scenes, "versions": versions(),
             "seconds": time.perf_counter() - t0,
             "methods": {f"{n}:{d}": {"miou": r["metrics"]["miou"], "scenes_per_s": r["scenes_per_s"]}
                         for (n, d), r in rows.items()}}
  write_json(out / "results.json", summary)
  print(f"wrote {out / 'results.json'} ({summary['seconds']:.0f} s)")
  return summary
