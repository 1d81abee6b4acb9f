"""DiTTA on the synthetic benchmark: warm-up 10% and 50%, baselines, ablation, speed.

  python benchmarks/ditta.py                    # held-out seeds 2000 3000 4000 x 4 videos x 48 frames
  python benchmarks/ditta.py --seeds 2000 --videos 2 --no-cotta          # quick look
  python benchmarks/ditta.py --sam2-time        # also time SAM2 Hiera-tiny propagation (random weights)
  python benchmarks/ditta.py --propagator oracle  # targets from the generator's objects ("oracle")
  python benchmarks/ditta.py --sweep --seeds 1000 # DiTTA's lr x add-on radius on a tuning seed
  python benchmarks/ditta.py --checkpoint DIR/model --size 256   # another ISS model (issue 14's B2)

Per warm-up and method: mIoU, wIoU, mVC8, mVC16 (mean +- std over seeds, frames
after the warm-up only) and frames/s. Targets come from the optical-flow
propagator (no weights here), or with `--propagator oracle` from a perfect
segmenter that knows the generator's objects (classes still from the ISS model):
it separates the method's faults from the flow stand-in's, and every row, table
and JSON built with it says "oracle". The one-time cost of building targets (ISS
probabilities + propagation) is reported per frame. Frozen-inference speed is
timed by running each model predict-only: DiTTA (plain + add-on fusion) against
the ISS model, and zero-shot refinement as ISS + propagation of every frame.

DiTTA rows: `ditta` uses this benchmark's settings (`SYNTHETIC_DITTA` in
ttt_jax/methods/defaults.py, chosen with `--sweep` on seed 1000, which is not
evaluated here); `ditta_ref` the reference settings (lr 1e-3, radius 5). Ablation rows follow the
paper: without distillation targets the model's own predictions are the targets.
Writes benchmarks/results/ditta.json.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from sam2_bridge import cache_schema
from sam2_bridge.cli import versions as bridge_versions
from sam2_bridge.propagators import FlowPropagator, OraclePropagator
from sam2_bridge.targets import write_targets, zero_shot_targets
from video_ttt import agg  # benchmarks/ is the script's folder, first on sys.path
from ttt_jax import compile_cache
from ttt_jax.methods.defaults import SYNTHETIC_DITTA, ditta_config
from ttt_jax.methods.ditta_export import export
from ttt_jax.data.datasets import load_videos
from ttt_jax.io.files import write_json
from ttt_jax.io.versions import versions
from ttt_jax.runner.run import make_runner, run

TUNED = SYNTHETIC_DITTA
REFERENCE = {"method.optimizer.lr": 1e-3, "method.ditta.radius": 5}
ABLATION = {"addon_only": dict(addon=True, distill=False, contrast=False),
            "distill_only": dict(addon=False, distill=True, contrast=False),
            "contrast_only": dict(addon=False, distill=False, contrast=True)}


def _set(c, over: dict):
  """`c` with dotted-key overrides applied."""
  c.update_from_flattened_dict(over)
  return c


def build_targets(export_dir: Path, out_dir: Path, mode: str, propagator: str = "flow") -> float:
  """Targets for every exported video (flow, or the oracle from the exported instances);
  returns propagation seconds in all."""
  secs = 0.0
  for vdir in sorted(export_dir.iterdir()):
    prop = (OraclePropagator(np.load(vdir / "instances.npy")) if propagator == "oracle"
            else FlowPropagator())
    secs += write_targets(out_dir / f"{vdir.name}.npz", prop, prop.teacher_digest(),
                          np.load(vdir / "frames.npy"), np.load(vdir / "iss_probs.npy"), mode=mode,
                          versions=bridge_versions(),
                          iss_digest=cache_schema.read_iss_digest(vdir / "iss_probs.npy"))[1]
  return secs


def metrics(r):
  return {**{k: r["metrics"][k] for k in ("miou", "wiou", "mvc8", "mvc16")}, "fps": r["fps"],
          "seconds": r["seconds"], "frames": r["frames"]}


def predict_fps(cfg, repeats: int = 3) -> float:
  """Frames/s of a predict-only config on its first video: median of warm runs."""
  runner = make_runner(cfg)[0]
  vid, frames, _ = next(iter(load_videos(cfg.data)))
  runner.run_one(vid, frames, 0)  # compile and warm up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    runner.run_one(vid, frames, 0)
    times.append(time.perf_counter() - t0)
  return len(frames) / float(np.median(times))


def speeds(data: dict, repeats: int = 5) -> dict:
  """Frozen inference: DiTTA's predict path (plain + add-on + fusion), without the add-on,
  and the ISS model, each predict-only (mode 'none')."""
  frozen = lambda **kw: {**data, **kw, "method.mode": "none"}
  return {
      "iss": predict_fps(_set(ditta_config(kind="none", name="iss"), data), repeats),
      "ditta": predict_fps(_set(ditta_config(distill=False), frozen(**TUNED)), repeats),
      "ditta_ref": predict_fps(_set(ditta_config(distill=False), frozen(**REFERENCE)), repeats),
      "ditta_without_addon": predict_fps(_set(ditta_config(distill=False, addon=False), frozen(**TUNED)), repeats),
  }


def sam2_time(frames, probs0, image_size):
  from sam2_bridge.sam2_propagator import SAM2Propagator
  prop = SAM2Propagator("configs/sam2.1/sam2.1_hiera_t.yaml", None, image_size=image_size)
  a = zero_shot_targets(prop, frames, probs0)
  return float(a["seconds"]) / len(frames), int(a["masks"].shape[1])


SWEEP_LR = (1e-4, 3e-4, 1e-3)
SWEEP_RADIUS = (1, 5)


def _source(a) -> dict:
  """The ISS source model and frame size of the command line, as config overrides."""
  return {"model.checkpoint": a.checkpoint, "data.height": a.size, "data.width": a.size}


def sweep(a):
  """DiTTA's mIoU over lr x add-on radius per warm-up, beside the ISS model: for choosing
  `SYNTHETIC_DITTA` on tuning seeds (never the held-out ones the table reports)."""
  data = {**_source(a), "data.num_videos": a.videos, "data.num_frames": a.frames}
  res: dict[str, list] = {}
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    for seed in a.seeds:
      for w in a.warmups:
        tag = f"w{int(w * 100)}"
        base = lambda **kw: _set(ditta_config(warmup=w, **kw), {**data, "data.seed": seed})
        exp, tgt = tmp / f"export_{tag}_{seed}", tmp / f"targets_{tag}_{seed}"
        export(base(), exp, progress=False)
        build_targets(exp, tgt, "ditta", a.propagator)
        r = run(base(kind="none", name="iss"), tmp / f"iss_{tag}_{seed}", progress=False)
        res.setdefault(f"{tag}/iss", []).append(metrics(r))
        for lr in SWEEP_LR:
          for rad in SWEEP_RADIUS:
            over = {"method.optimizer.lr": lr, "method.ditta.radius": rad}
            r = run(_set(base(targets_dir=str(tgt)), over), tmp / f"d_{tag}_{seed}_{lr}_{rad}", progress=False)
            res.setdefault(f"{tag}/ditta lr={lr:g} r={rad}", []).append(metrics(r))
            print(f"seed {seed} {tag} lr={lr:g} radius={rad}: mIoU {100 * r['metrics']['miou']:.2f} "
                  f"mVC8 {100 * r['metrics']['mvc8']:.2f}", flush=True)
  rows = {k: agg(v) for k, v in res.items()}
  print(f"\nsweep on seeds {a.seeds} ({a.propagator}): mIoU / mVC8, mean over seeds")
  for k, r in rows.items():
    print(f"{k:28s} {100 * r['miou']:6.2f} {100 * r['mvc8']:6.2f}")
  out = write_json(a.json, {"propagator": a.propagator, "seeds": a.seeds, **_source(a), "rows": rows,
                            "versions": versions()})
  print(f"wrote {out}")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--seeds", type=int, nargs="+", default=[2000, 3000, 4000])
  p.add_argument("--videos", type=int, default=4)
  p.add_argument("--frames", type=int, default=48)
  p.add_argument("--warmups", type=float, nargs="+", default=[0.1, 0.5])
  p.add_argument("--no-cotta", action="store_true")
  p.add_argument("--sam2-time", action="store_true")
  p.add_argument("--sam2-size", type=int, default=256)
  p.add_argument("--speed-only", action="store_true", help="only the frozen-inference frames/s")
  p.add_argument("--propagator", choices=("flow", "oracle"), default="flow")
  p.add_argument("--sweep", action="store_true", help="DiTTA only, over lr x add-on radius")
  p.add_argument("--checkpoint", default="builtin_bn",
                 help="ISS source model: builtin_bn (shipped, BatchNorm heads), builtin or a model dir")
  p.add_argument("--size", type=int, default=64, help="frame side in pixels (the shipped models: 64)")
  p.add_argument("--json", default="")
  a = p.parse_args(argv)
  a.json = a.json or ("benchmarks/results/ditta" + ("_oracle" if a.propagator == "oracle" else "")
                      + ("_sweep" if a.sweep else "") + ".json")
  compile_cache.enable()
  source = _source(a)
  if a.sweep:
    return sweep(a)
  if a.speed_only:
    sp = speeds({**source, "data.num_videos": a.videos, "data.num_frames": a.frames, "data.seed": a.seeds[0]})
    print("frozen inference, frames/s (warm, predict only):", {k: round(v, 3) for k, v in sp.items()})
    print(f"wrote {write_json(a.json.replace('.json', '_speed.json'), {'speed': sp, 'versions': versions()})}")
    return
  data = {**source, "data.num_videos": a.videos, "data.num_frames": a.frames}
  rows: dict[str, dict] = {}
  costs = {}
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    per: dict[str, list] = {}
    for seed in a.seeds:
      zs_dir = tmp / f"zs_{seed}"
      for w in a.warmups:
        tag = f"w{int(w * 100)}"
        base = lambda **kw: _set(ditta_config(warmup=w, **kw), {**data, "data.seed": seed})
        exp = tmp / f"export_{tag}_{seed}"
        export(base(), exp, progress=False)
        tgt = tmp / f"targets_{tag}_{seed}"
        t_prop = build_targets(exp, tgt, "ditta", a.propagator)
        if not zs_dir.exists():
          t_zs = build_targets(exp, zs_dir, "zero_shot", a.propagator)
          costs.setdefault("zero_shot_propagation_s", []).append(t_zs)
        n_warm = sum(len(np.load(v / "iss_probs.npy", mmap_mode="r")) for v in exp.iterdir())
        costs.setdefault(f"{tag}_flow_s_per_warmup_frame", []).append(t_prop / n_warm)

        def go(name, cfg, out):
          per.setdefault(f"{tag}/{name}", []).append(metrics(run(cfg, tmp / out, progress=False)))

        # Baselines; their predictions do not depend on the warm-up, only the scored frames
        # do, so later warm-ups reuse the saved predictions (run() resumes) and rescore.
        go("iss", base(kind="none", name="iss"), f"iss_{seed}")
        if not a.no_cotta:
          go("cotta", base(kind="cotta", name="cotta"), f"cotta_{seed}")
        go(f"zero_shot_{a.propagator}", base(kind="zero_shot", name="zero_shot", targets_dir=str(zs_dir)), f"zs_{seed}")
        go("ditta", _set(base(targets_dir=str(tgt)), TUNED), f"ditta_{tag}_{seed}")
        go("ditta_ref", _set(base(targets_dir=str(tgt)), REFERENCE), f"ditta_ref_{tag}_{seed}")
        for name, flags in ABLATION.items():
          go(name, _set(base(targets_dir=str(tgt), **flags), TUNED), f"{name}_{tag}_{seed}")
    sp = speeds({**data, "data.seed": a.seeds[0]})
    fps_iss, fps_ditta, fps_ditta_ref = sp["iss"], sp["ditta"], sp["ditta_ref"]
    for k, runs in per.items():
      rows[k] = agg(runs)
    frames0, probs0 = None, None
    if a.sam2_time:
      v = sorted((tmp / f"export_w{int(a.warmups[0] * 100)}_{a.seeds[0]}").iterdir())[0]
      frames0, probs0 = np.load(v / "frames.npy"), np.load(v / "iss_probs.npy")[0]
      costs["sam2_tiny_s_per_frame"], costs["sam2_objects"] = sam2_time(frames0, probs0, a.sam2_size)
  costs = {k: (float(np.mean(v)) if isinstance(v, list) else v) for k, v in costs.items()}
  tot_frames = a.videos * a.frames * len(a.seeds)
  # Zero-shot refinement per frame = the ISS forward + propagating that frame.
  zs_fps = 1.0 / (1.0 / fps_iss + costs["zero_shot_propagation_s"] * len(a.seeds) / tot_frames)
  ratios = {"ditta_without_addon_fps": sp["ditta_without_addon"], "iss_fps": fps_iss, "ditta_frozen_fps": fps_ditta, "ditta_ref_frozen_fps": fps_ditta_ref,
            f"zero_shot_{a.propagator}_fps": zs_fps, "ditta_over_iss": fps_ditta / fps_iss,
            "ditta_ref_over_iss": fps_ditta_ref / fps_iss, f"ditta_over_zero_shot_{a.propagator}": fps_ditta / zs_fps,
            "iss_probs_s_per_frame": 1.0 / fps_iss}
  if "sam2_tiny_s_per_frame" in costs:
    zs2 = 1.0 / (1.0 / fps_iss + costs["sam2_tiny_s_per_frame"])
    ratios.update(zero_shot_sam2_tiny_fps=zs2, ditta_over_zero_shot_sam2_tiny=fps_ditta / zs2)
  print(f"\nseeds {a.seeds}, {a.videos} videos x {a.frames} frames; frames after the warm-up scored; "
        f"targets from the {a.propagator.upper() if a.propagator == 'oracle' else a.propagator} propagator")
  print(f"{'warm-up/method':28s} {'mIoU':>14s} {'wIoU':>7s} {'mVC8':>14s} {'mVC16':>7s} {'frames/s':>9s}")
  for k, r in rows.items():
    print(f"{k:28s} {100 * r['miou']:6.2f} +- {100 * r['miou_std']:4.2f} {100 * r['wiou']:7.2f} "
          f"{100 * r['mvc8']:6.2f} +- {100 * r['mvc8_std']:4.2f} {100 * r['mvc16']:7.2f} {r['fps']:9.1f}")
  print("\nspeed (frames/s, predict only, warm):", {k: round(v, 3) for k, v in ratios.items()})
  print("one-time costs:", {k: round(v, 4) if isinstance(v, float) else v for k, v in costs.items()})
  findings = {}
  for w in a.warmups:
    tag = f"w{int(w * 100)}"
    d_m = np.array(rows[f"{tag}/ditta"]["per_seed_miou"]) - np.array(rows[f"{tag}/iss"]["per_seed_miou"])
    d_v = np.array(rows[f"{tag}/ditta"]["per_seed_mvc8"]) - np.array(rows[f"{tag}/iss"]["per_seed_mvc8"])
    sd = lambda x: float(x.std(ddof=1)) if len(x) > 1 else 0.0
    findings[tag] = {"ditta_minus_iss_miou": [float(d_m.mean()), sd(d_m)],
                     "ditta_minus_iss_mvc8": [float(d_v.mean()), sd(d_v)],
                     "per_seed_miou_delta": d_m.tolist(), "per_seed_mvc8_delta": d_v.tolist()}
    print(f"{tag}: DiTTA - ISS  mIoU {100 * d_m.mean():+.2f} +- {100 * sd(d_m):.2f}   "
          f"mVC8 {100 * d_v.mean():+.2f} +- {100 * sd(d_v):.2f}  (points, mean +- std over seeds)")
  out = write_json(a.json, {"propagator": a.propagator, "tuned": TUNED, "reference": REFERENCE,
                            "seeds": a.seeds, "videos": a.videos, "frames": a.frames, **source, "rows": rows,
                            "speed": ratios, "costs": costs, "findings": findings, "versions": versions()})
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
