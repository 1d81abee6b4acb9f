"""CAST's instance model, supervised: does it learn, and does what it learns carry to
validation images? A learning curve, to size benchmarks/cast.py's steps and data.

  python benchmarks/cast_curve.py                                  # 40 labelled (the default 10%)
  python benchmarks/cast_curve.py --set data.labelled_fraction=1.0 # all 400 labelled
  python benchmarks/cast_curve.py --images 8 --steps 1000          # memorise 8 images
  python benchmarks/cast_curve.py --init-model WORK/foundation_student/teacher_sup/model
  python benchmarks/cast_curve.py --set data.name=shapes data.num_train=2000 data.labelled_fraction=1.0 \
      --save /tmp/found_s                                         # a foundation model, then --init-model

One model (`--role`'s architecture of configs/cast.py) trained with L_sup only from
random weights (or `--init-model`, all of it but the class head) on the labelled
images of the tuning seed 0 (`--seed`); every `--eval-every` steps, mask AP and AP50
(x 100, pycocotools) on the images it trains on (at most `--train-eval` of them) and
on the validation images, and the set loss averaged since the last row. A model that
learns but does not generalise shows a rising training AP and a flat validation AP.
Batches are augmented as the stages augment them (`augment.*`: the reference's scale
jitter 0.5 to 2, colour jitter, flips); `--set augment.min_scale=1 augment.max_scale=1
augment.colour=False` leaves flips only.
Prints a table, writes benchmarks/results/cast_curve.json (or --json).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

from ttt_jax import compile_cache
from ttt_jax.checkpoint.model_io import save_model
from ttt_jax.cli.config_io import apply_overrides, load_config_file
from ttt_jax.data.instance_sets import load_sets, unpadded
from ttt_jax.data.instances import InstanceImage
from ttt_jax.io.files import write_json
from ttt_jax.io.versions import versions
from ttt_jax.train.cast import (augment_config, batch_sampler, compute_dtype, evaluate, initial_variables,
                                set_loss_config)
from ttt_jax.train.cast_step import initial_state, make_optimizer, make_step

ROOT = Path(__file__).resolve().parent.parent


def score(variables, cfg, images: list[InstanceImage], c) -> dict:
  """Mask AP and AP50 (x 100) of `variables` on `images`."""
  r = evaluate(variables, cfg, images, c)
  return {"ap": 100 * r["ap"], "ap50": 100 * r["ap50"]}


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--seed", type=int, default=0, help="data and run seed (0 = tuning)")
  p.add_argument("--role", choices=("student", "teacher"), default="student", help="which architecture")
  p.add_argument("--images", type=int, default=0, help="train on the first N labelled images (0 = all)")
  p.add_argument("--steps", type=int, default=2000)
  p.add_argument("--eval-every", type=int, default=400)
  p.add_argument("--lr", type=float, default=1e-3)
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--train-eval", type=int, default=40, help="score at most this many training images")
  p.add_argument("--init-model", default="", help="start from this instance model (a foundation model)")
  p.add_argument("--save", default="", help="write the trained model here (an --init-model for later runs)")
  p.add_argument("--set", nargs="*", default=[], help="config overrides, key=value")
  p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "cast_curve.json"))
  a = p.parse_args()
  if a.steps < 1 or a.eval_every < 1:
    p.error(f"--steps and --eval-every must be positive, got {a.steps} and {a.eval_every}")
  compile_cache.enable()
  c = load_config_file(str(ROOT / "configs" / "cast.py"))
  c.seed = c.data.seed = a.seed
  c = apply_overrides(c, [*a.set, f"{a.role}.dropout=0.0"] +
                      ([f"{a.role}.init_model={a.init_model}"] if a.init_model else []))
  sets = load_sets(c)
  lab = sets["labelled"]
  n = a.images or len(lab["labels_NG"])
  if not 1 <= n <= len(lab["labels_NG"]):
    p.error(f"--images {a.images}: the config has {len(lab['labels_NG'])} labelled images")
  lab = {k: v[:n] for k, v in lab.items()}
  train_images = [unpadded(lab, i, f"labelled-{i}") for i in range(min(n, a.train_eval))]   # scored as they train
  batch = batch_sampler(c, {**sets, "labelled": lab}, None, a.batch, 0)
  variables, cfg = initial_variables(c, a.role)
  # Constant weight decay 0 and a loose clip: the curve measures learning, not regularisation.
  tx = make_optimizer(a.lr, a.steps, 0.0, 1.0)
  state = initial_state(variables, tx)
  step = make_step(cfg, tx, lambda_semi=0.0, lambda_pxl=0.0, contrast=None,
                   set_cfg=set_loss_config(c), compute_dtype=compute_dtype(c), augment=augment_config(c))
  rows, losses, t0 = [], [], time.perf_counter()
  print(f"{a.role} ({c[a.role].size}), {n} labelled images of seed {a.seed}, lr {a.lr}, batch {a.batch}")
  print(f"{'step':>6} {'loss':>8} {'train AP':>9} {'AP50':>6} {'val AP':>7} {'AP50':>6} {'s':>6}")
  for s in range(a.steps):
    state, metrics = step(state, *batch(s), jax.random.key(s))
    losses.append(metrics["sup"])
    if (s + 1) % a.eval_every == 0 or s + 1 == a.steps:
      v = {"params": state.params, "batch_stats": state.batch_stats}
      row = {"step": s + 1, "loss": float(np.mean(jax.device_get(losses))),
             "train": score(v, cfg, train_images, c), "val": score(v, cfg, sets["val"], c),
             "seconds": time.perf_counter() - t0}
      losses = []
      rows.append(row)
      print(f"{row['step']:6d} {row['loss']:8.2f} {row['train']['ap']:9.2f} {row['train']['ap50']:6.2f} "
            f"{row['val']['ap']:7.2f} {row['val']['ap50']:6.2f} {row['seconds']:6.0f}", flush=True)
  if a.save:
    save_model(a.save, {"params": state.params, "batch_stats": state.batch_stats}, cfg,
               {"trained_by": f"benchmarks/cast_curve.py, {a.steps} steps on {n} images ({c.data.name})"})
  write_json(a.json, {"seed": a.seed, "role": a.role, "size": c[a.role].size, "images": n, "lr": a.lr,
                      "batch": a.batch, "init_model": a.init_model, "overrides": a.set, "rows": rows,
                      "versions": versions(), "config": c.to_dict()})
  print(f"wrote {a.json}")


if __name__ == "__main__":
  main()
