"""The video-TTT paper's findings, reproduced in direction on the synthetic benchmark.

  python benchmarks/video_ttt.py                       # 3 held-out seeds x 4 videos x 48 frames
  python benchmarks/video_ttt.py --seeds 1000 --videos 2 --frames 24   # quick look
  python benchmarks/video_ttt.py --sweep-lr            # the lr sweep behind the demo's 1e-3

Prints, per method, mIoU (mean +- std over seeds), wIoU, mVC8, mVC16 and frames/s,
then the findings: online > no memory > main task; online > offline; each memory
helps; window sweep 1/4/16/64; shuffling removes online's advantage; and the
margin online - main task per seed. Writes benchmarks/results/video_ttt.json.
Settings are the demo's (ttt_jax/demo.py): batch 16, lr 1e-3 for the small model.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from ttt_jax import compile_cache
from ttt_jax.demo import demo_config
from ttt_jax.methods.video_run import run, versions, write_json

MAIN = ("main_task", "ttt_mae_no_mem", "online_ttt_mae", "implicit_only", "explicit_only", "offline")
EXTRA = ("norm_adapt", "tent", "self_train")


def one(name, seed, a, tmp, **over):
  c = demo_config(name, quick=False)
  c.data.seed, c.data.num_videos, c.data.num_frames = seed, a.videos, a.frames
  if name == "offline":
    c.method.offline_iters = a.frames
  c.update_from_flattened_dict(over)
  tag = "_".join([name, str(seed)] + [f"{k}={v}" for k, v in over.items()])
  r = run(c, Path(tmp) / tag, progress=False)
  return {**{k: r["metrics"][k] for k in ("miou", "wiou", "mvc8", "mvc16")}, "fps": r["fps"]}


def agg(runs):
  out = {}
  for k in ("miou", "wiou", "mvc8", "mvc16", "fps"):
    v = np.array([r[k] for r in runs])
    out[k], out[k + "_std"] = float(v.mean()), float(v.std(ddof=1) if len(v) > 1 else 0.0)
  out["per_seed_miou"] = [r["miou"] for r in runs]
  out["per_seed_mvc8"] = [r["mvc8"] for r in runs]
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--seeds", type=int, nargs="+", default=[1000, 2000, 3000])
  p.add_argument("--videos", type=int, default=4)
  p.add_argument("--frames", type=int, default=48)
  p.add_argument("--no-extra", action="store_true", help="skip norm adapt, Tent, self-training")
  p.add_argument("--sweep-lr", action="store_true")
  p.add_argument("--json", default="benchmarks/results/video_ttt.json")
  a = p.parse_args(argv)
  compile_cache.enable()
  rows: dict[str, dict] = {}
  with tempfile.TemporaryDirectory() as tmp:
    def method(label, name, **over):
      rows[label] = agg([one(name, s, a, tmp, **over) for s in a.seeds])
      r = rows[label]
      print(f"{label:<22} mIoU {100 * r['miou']:6.2f} +- {100 * r['miou_std']:4.2f}  wIoU {100 * r['wiou']:6.2f}  "
            f"mVC8 {100 * r['mvc8']:6.2f}  mVC16 {100 * r['mvc16']:6.2f}  {r['fps']:7.1f} frames/s", flush=True)

    if a.sweep_lr:
      for lr in (1e-4, 3e-4, 1e-3, 3e-3):
        method(f"online lr={lr:g}", "online_ttt_mae", **{"method.lr": lr})
    else:
      for name in MAIN + (() if a.no_extra else EXTRA):
        method(name, name)
      for k in (1, 4, 64):
        method(f"online window={k}", "online_ttt_mae", **{"method.window": k})
      rows["online window=16"] = rows["online_ttt_mae"]
      method("main_task shuffled", "main_task", **{"data.shuffled": True})
      method("online shuffled", "online_ttt_mae", **{"data.shuffled": True})
  findings = {}
  if not a.sweep_lr:
    m = lambda k: rows[k]["miou"]
    margin = np.array(rows["online_ttt_mae"]["per_seed_miou"]) - np.array(rows["main_task"]["per_seed_miou"])
    sh_margin = (np.array(rows["online shuffled"]["per_seed_miou"])
                 - np.array(rows["main_task shuffled"]["per_seed_miou"]))
    findings = {
        "online > no memory": m("online_ttt_mae") > m("ttt_mae_no_mem"),
        "no memory > main task": m("ttt_mae_no_mem") > m("main_task"),
        "online > offline": m("online_ttt_mae") > m("offline"),
        "implicit helps (online > explicit only)": m("online_ttt_mae") > m("explicit_only"),
        "explicit helps (online > implicit only)": m("online_ttt_mae") > m("implicit_only"),
        "shuffling shrinks online's margin": float(sh_margin.mean()) < float(margin.mean()),
        "window sweep mIoU": {k: m(f"online window={k}") for k in (1, 4, 16, 64)},
        "margin online - main (mIoU points)": {"mean": 100 * float(margin.mean()),
                                               "std": 100 * float(margin.std(ddof=1)) if len(margin) > 1 else 0.0,
                                               "per_seed": (100 * margin).tolist()},
        "margin shuffled (mIoU points)": {"mean": 100 * float(sh_margin.mean()),
                                          "per_seed": (100 * sh_margin).tolist()},
    }
    print("\nfindings:")
    for k, v in findings.items():
      print(f"  {k}: {v}")
  out = write_json(a.json, {"seeds": a.seeds, "videos": a.videos, "frames": a.frames, "rows": rows,
                            "findings": findings, "versions": versions()})
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
