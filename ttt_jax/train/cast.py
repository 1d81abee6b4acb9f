"""CAST's three stages, run by `ttt-jax pretrain configs/cast.py --out DIR` (task 'cast').

  teacher_sup    the teacher fine-tuned on the labelled set (L_sup only)
  teacher_self   its pseudo-labels of the unlabelled set; the teacher re-initialised to
                 its starting weights and self-trained on labelled + pseudo-labelled
                 data with the pixel loss: the adapted teacher
  student        the adapted teacher frozen; its pseudo-labels (score > threshold),
                 their masks optionally replaced by SAM2's masks of their boxes
                 (`sam2-bridge boxes` on the stage's unlabelled_images.npy and
                 teacher_boxes.npy, then `student.box_masks=CACHE`); the compact
                 student trained with L_sup + lambda_semi L_semi + lambda_pxl L_pxl
  refine         the student fine-tuned on the labelled set only

`c.stage`: 'all', 'teacher' (the first two), or one stage name. Each stage writes
OUT/<stage>/{checkpoints, model, pseudo.npz, eval.json, predictions/} (and the
validation ground truth once, OUT/val_gt/, for `ttt-jax evaluate --instances`); a stage whose model exists
is not rerun, an interrupted one resumes from its last checkpoint, a stage run
without the previous stage's model is refused with that path named. After each
stage the model is scored on the validation set (mask AP, AP50 through pycocotools)
and OUT/results.json gathers every stage's figures.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ttt_jax.checkpoint.model_io import load_model, save_model
from ttt_jax.data import instance_io
from ttt_jax.data.instance_sets import load_sets
from ttt_jax.io.files import save_npy, save_npz, write_json
from ttt_jax.methods.instance_augment import InstanceAugment
from ttt_jax.methods.instance_predict import instance_predictions, pseudo_labels
from ttt_jax.metrics.mask_ap import mask_ap
from ttt_jax.models.instance_seg import init_variables, instance_seg_config
from ttt_jax.objectives import pixel_contrast as pc
from ttt_jax.objectives.set_loss import SetLossConfig
from ttt_jax.train.cast_step import initial_state, make_optimizer, make_step, predict_fn
from ttt_jax.train.loop import latest_step, train_loop

STAGES = ("teacher_sup", "teacher_self", "student", "refine")
GROUPS = {"all": STAGES, "teacher": STAGES[:2]}


def stages_of(name: str) -> tuple[str, ...]:
  if name in GROUPS:
    return GROUPS[name]
  if name in STAGES:
    return (name,)
  raise ValueError(f"unknown CAST stage {name!r}; expected one of {sorted(GROUPS) + list(STAGES)}")


def model_config(c, role: str):
  """The teacher's or student's architecture from the config."""
  r = c.teacher if role == "teacher" else c.student
  h, w = c.image_hw
  return instance_seg_config(r.size, c.num_classes, image_size=max(h, w), dropout=r.dropout,
                             embed_dim=c.contrast.embed_dim, patch_size=c.model.patch_size)


def _from_model(v, path: str, role: str):
  """`v` with every weight of the instance model saved at `path` but its class head
  (the classes it was trained on are not these): the foundation start."""
  loaded, _, _ = load_model(path, "instance_seg")
  flat = {jax.tree_util.keystr(k): a for k, a in jax.tree_util.tree_flatten_with_path(loaded)[0]}
  ours = jax.tree_util.tree_flatten_with_path(v)[0]
  if set(flat) != {jax.tree_util.keystr(k) for k, _ in ours}:
    raise ValueError(f"{path}: its weights are not those of the config's {role} (another architecture)")

  def pick(k, a):
    name, b = jax.tree_util.keystr(k), flat[jax.tree_util.keystr(k)]
    if "class_embed" in name:
      return a
    if b.shape != a.shape:
      raise ValueError(f"{path}: {name} has shape {b.shape}; the config's {role} needs {a.shape}")
    return jnp.asarray(b, a.dtype)
  return jax.tree_util.tree_map_with_path(pick, v)


def initial_variables(c, role: str):
  """The starting ('pretrained') weights: random from the seed; or every weight but
  the class head of an instance model (`<role>.init_model`, a foundation model of
  `configs/cast.py:foundation`); or with the encoder of a Hugging Face DINOv2 folder
  (`<role>.init_encoder`)."""
  cfg = model_config(c, role)
  r = c.teacher if role == "teacher" else c.student
  v = init_variables(cfg, jax.random.key(c.seed + (0 if role == "teacher" else 1)), c.image_hw)
  if r.get("init_model"):
    v = _from_model(v, r.init_model, role)
  if r.get("init_encoder"):
    import dataclasses
    from ttt_jax.checkpoint.convert_dinov2 import convert_hf_folder
    enc, vcfg = convert_hf_folder(r.init_encoder, out_layers=cfg.vit.out_layers)
    ours = (cfg.vit.hidden_size, cfg.vit.num_hidden_layers, cfg.vit.num_attention_heads, cfg.vit.patch_size)
    theirs = (vcfg.hidden_size, vcfg.num_hidden_layers, vcfg.num_attention_heads, vcfg.patch_size)
    if ours != theirs:
      raise ValueError(f"{r.init_encoder}: encoder (hidden, layers, heads, patch) {theirs} does not match "
                       f"{role} size {r.size!r} {ours}")
    cfg = dataclasses.replace(cfg, vit=vcfg)
    v = {"params": {**v["params"], "encoder": enc}, "batch_stats": v["batch_stats"]}
  return v, cfg


def compute_dtype(c) -> str:
  """`model.compute_dtype`: 'bfloat16' computes the model in bfloat16, parameters and
  optimizer state float32 (saved models are float32 either way)."""
  return c.model.get("compute_dtype", "float32")


def contrast_config(c) -> pc.ContrastConfig:
  """The pixel contrast's settings (`c.contrast`; 0 means off for the optional ones)."""
  k = c.contrast
  return pc.ContrastConfig(num_negatives=k.num_negatives, temperature=k.temperature,
                           final_temperature=k.final_temperature or None, decay_steps=k.decay_steps,
                           sampler=k.sampler, pseudo=k.pseudo, hinge=k.hinge or None, strong_grad=k.strong_grad,
                           max_anchors=k.max_anchors or None)


def augment_config(c) -> InstanceAugment:
  """The training augmentation of `c.augment`."""
  return InstanceAugment(**c.augment.to_dict())


def set_loss_config(c) -> SetLossConfig:
  """The set loss's settings (`c.loss`)."""
  return SetLossConfig(**c.loss.to_dict())


def load_stage_model(out: Path, stage: str, c, role: str):
  """The model a finished stage wrote, checked against the config's architecture."""
  d = out / stage / "model"
  if not (d / "model.json").is_file():
    raise FileNotFoundError(f"{d} not found: run the CAST stage {stage!r} first (stage={stage} or stage=all)")
  variables, cfg, _ = load_model(d, "instance_seg")
  want = model_config(c, role)
  if (cfg.decoder, cfg.dpt, cfg.num_classes) != (want.decoder, want.dpt, want.num_classes) or \
      cfg.vit.hidden_size != want.vit.hidden_size or cfg.vit.num_hidden_layers != want.vit.num_hidden_layers:
    raise ValueError(f"{d / 'model.json'} does not match the config's {role} (size {c[role].size!r}, "
                     f"{c.num_classes} classes)")
  return variables, cfg


def make_pseudo_labels(variables, cfg, images_NHW3, c, path: Path, progress: bool) -> dict:
  """Pseudo-labels of the unlabelled images (cached at `path`)."""
  if path.is_file():
    with np.load(path) as z:
      return {k: z[k] for k in z.files}
  f = predict_fn(cfg, compute_dtype(c))
  pl = jax.jit(jax.vmap(lambda q, m: pseudo_labels(q, m, c.threshold, c.max_targets)))
  rows = []
  for i in tqdm(range(0, len(images_NHW3), c.eval_batch), desc="pseudo-labels", disable=not progress):
    cls, masks = f(variables, images_NHW3[i:i + c.eval_batch])
    rows.append(jax.device_get(pl(cls, masks)))
  out = {"labels_NG": np.concatenate([r[0] for r in rows]), "masks_NGhw": np.concatenate([r[1] for r in rows]),
         "scores_NG": np.concatenate([r[2] for r in rows])}
  save_npz(path, **out)
  return out


def box_refinement(pseudo: dict, images_NHW3, c, stage_dir: Path) -> dict:
  """Writes the unlabelled images and the teacher's pseudo-label boxes for `sam2-bridge
  boxes`; with `c.student.box_masks` (its cache), the pseudo-labels take SAM2's masks
  of those boxes (image resolution) in place of the teacher's own."""
  from sam2_bridge import cache_schema
  from sam2_bridge.box_refine import boxes_from_masks
  boxes = boxes_from_masks(pseudo["masks_NGhw"], images_NHW3.shape[1:3])
  for name, a in (("unlabelled_images.npy", images_NHW3), ("teacher_boxes.npy", boxes)):
    if not (stage_dir / name).is_file():
      save_npy(stage_dir / name, a)
  path = c.student.get("box_masks")
  if not path:
    return pseudo
  arrays, _ = cache_schema.read_cache(path, "box_masks", video_digest=cache_schema.video_digest(images_NHW3))
  if not np.array_equal(np.isfinite(arrays["boxes"]), np.isfinite(boxes)) or \
      not np.allclose(np.nan_to_num(arrays["boxes"]), np.nan_to_num(boxes), atol=1e-3):
    raise ValueError(f"{path} holds masks of other boxes than this teacher's pseudo-labels "
                     f"({stage_dir / 'teacher_boxes.npy'})")
  return {**pseudo, "masks_NGhw": arrays["masks"] & (pseudo["labels_NG"] >= 0)[:, :, None, None]}


def predict_instances(variables, cfg, images_NHW3, batch: int, topk: int = 100, dtype: str = "float32"):
  """Per image `(masks_THW bool, labels_T, scores_T)` at image resolution (the model
  computing in `dtype`)."""
  f = predict_fn(cfg, dtype)
  h, w = images_NHW3.shape[1:3]
  k = min(topk, cfg.decoder.num_queries * cfg.num_classes)

  @jax.jit
  def post(cls_BQK, mask_BQhw):
    def one(q, m):
      labels, scores, query = instance_predictions(q, m, k)
      up = jax.image.resize(m[query], (k, h, w), "bilinear", antialias=False)
      return up > 0, labels, scores
    return jax.vmap(one)(cls_BQK, mask_BQhw)

  out = []
  for i in range(0, len(images_NHW3), batch):
    m, l, s = jax.device_get(post(*f(variables, images_NHW3[i:i + batch])))
    out.extend(zip(m, l, s))
  return out


def evaluate(variables, cfg, val, c, pred_dir: Path | None = None) -> dict:
  """Mask AP on `val`; with `pred_dir`, each image's predictions are written there
  (`instance_io`), for `ttt-jax evaluate --instances`."""
  images = np.stack([im.image_HW3 for im in val])
  preds = predict_instances(variables, cfg, images, c.eval_batch, dtype=compute_dtype(c))
  if pred_dir is not None:
    for im, (m, l, s) in zip(val, preds):
      instance_io.write_instances(pred_dir / f"{im.image_id}.npz", m, l, s)
  return mask_ap([(im.masks_NHW, im.labels_N) for im in val], preds, c.num_classes)


def batch_sampler(c, sets, pseudo, n_lab: int, n_unl: int):
  """`batch(step) -> (labelled batch, unlabelled batch or None)`: `n_lab` labelled and
  `n_unl` unlabelled images (with their pseudo-labels) drawn by `(c.seed, step)`."""
  lab, unl = sets["labelled"], sets["unlabelled"]

  def batch(step):
    rng = np.random.default_rng([c.seed, step])
    i = rng.integers(len(lab["labels_NG"]), size=n_lab)
    b_lab = {"images_BHW3": lab["images_NHW3"][i], "labels_BG": lab["labels_NG"][i],
             "masks_BGHW": lab["masks_NGHW"][i]}
    if not n_unl:
      return b_lab, None
    j = rng.integers(len(unl["images_NHW3"]), size=n_unl)
    return b_lab, {"images_BHW3": unl["images_NHW3"][j], "labels_BG": pseudo["labels_NG"][j],
                   "masks_BGhw": pseudo["masks_NGhw"][j]}
  return batch


def train_stage(stage, c, sets, variables, cfg, pseudo, out: Path, progress: bool, stop_at):
  """One stage's training from `variables`; returns the trained variables (None if stopped)."""
  r = {"teacher_sup": c.teacher, "teacher_self": c.teacher, "student": c.student, "refine": c.refine}[stage]
  steps = r.steps_sup if stage == "teacher_sup" else r.steps
  supervised_only = stage in ("teacher_sup", "refine")
  n_unl = 0 if supervised_only or not len(sets["unlabelled"]["images_NHW3"]) else r.unlabelled_batch
  lam_semi = 0.0 if supervised_only else r.lambda_semi
  lam_pxl = 0.0 if supervised_only else r.lambda_pxl
  tx = make_optimizer(r.lr, steps, r.weight_decay, r.clip)
  # Fresh device arrays: restored ones carry a layout of their own, and a step jitted on
  # them would compile again for its own outputs.
  variables = jax.tree.map(jnp.asarray, jax.device_get(variables))
  bank = None
  k = c.contrast
  if lam_pxl > 0 and k.bank_size:
    bank = pc.memory_bank(k.bank_size, cfg.embed_dim, cfg.decoder.num_queries, cfg.num_classes + 1)
  state = initial_state(variables, tx, bank)
  step = make_step(cfg, tx, lambda_semi=lam_semi, lambda_pxl=lam_pxl, contrast=contrast_config(c),
                   set_cfg=set_loss_config(c),
                   use_bank=bool(lam_pxl > 0 and k.bank_size), bank_push=k.bank_push,
                   compute_dtype=compute_dtype(c), augment=augment_config(c))
  batch = batch_sampler(c, sets, pseudo, r.batch, n_unl)
  start = latest_step(out / stage / "checkpoints")
  first = []

  def timed_step(state, *args):   # the first step's end: speed is measured after compilation
    res = step(state, *args)
    if not first:
      jax.block_until_ready(res)
      first.append(time.perf_counter())
    return res

  state, log, secs = train_loop(state, timed_step, batch, steps=steps, ckpt_dir=out / stage / "checkpoints",
                                seed=c.seed, save_every=c.save_every, log_every=c.log_every, desc=f"CAST {stage}",
                                progress=progress, stop_at=stop_at)
  n = int(state.step) - start
  steady = time.perf_counter() - first[0] if first else 0.0
  run = {"seconds": secs, "steps_run": n, "log": log,
         "steps_per_s": (n - 1) / steady if n > 1 and steady > 0 else None}
  if int(state.step) < steps:
    return None, run
  return {"params": state.params, "batch_stats": state.batch_stats}, run


def run_cast(c, out_dir, *, progress: bool = True, stop_at: int | None = None) -> dict:
  """Runs `c.stage`; returns the results dict (also OUT/results.json)."""
  out = Path(out_dir).absolute()
  out.mkdir(parents=True, exist_ok=True)
  todo = stages_of(c.stage)
  sets = load_sets(c)
  results_file = out / "results.json"
  results = json.loads(results_file.read_text()) if results_file.is_file() else {}
  results["config"] = json.loads(c.to_json())
  for im in sets["val"]:   # the validation ground truth, for `ttt-jax evaluate --instances`
    f = out / "val_gt" / f"{im.image_id}.npz"
    if not f.is_file():
      instance_io.write_instances(f, im.masks_NHW, im.labels_N)
  for stage in todo:
    mdir = out / stage / "model"
    if (mdir / "model.json").is_file() and (out / stage / "eval.json").is_file():
      results[stage] = json.loads((out / stage / "eval.json").read_text())
      continue
    pseudo = None
    if stage == "teacher_sup":
      variables, cfg = initial_variables(c, "teacher")
    elif stage == "teacher_self":
      tv, tcfg = load_stage_model(out, "teacher_sup", c, "teacher")
      (out / stage).mkdir(parents=True, exist_ok=True)
      pseudo = make_pseudo_labels(tv, tcfg, sets["unlabelled"]["images_NHW3"], c, out / stage / "pseudo.npz",
                                  progress)
      variables, cfg = initial_variables(c, "teacher")   # reset to the starting weights
    elif stage == "student":
      tv, tcfg = load_stage_model(out, "teacher_self", c, "teacher")
      (out / stage).mkdir(parents=True, exist_ok=True)
      pseudo = make_pseudo_labels(tv, tcfg, sets["unlabelled"]["images_NHW3"], c, out / stage / "pseudo.npz",
                                  progress)
      pseudo = box_refinement(pseudo, sets["unlabelled"]["images_NHW3"], c, out / stage)
      variables, cfg = initial_variables(c, "student")
    else:
      variables, cfg = load_stage_model(out, "student", c, "student")
    t0 = time.perf_counter()
    trained, run = train_stage(stage, c, sets, variables, cfg, pseudo, out, progress, stop_at)
    if trained is None:
      write_json(results_file, results)
      return results
    save_model(mdir, trained, cfg, {"trained_by": f"ttt-jax CAST stage {stage}", "seconds": run["seconds"]})
    ev = evaluate(trained, cfg, sets["val"], c, out / stage / "predictions")
    # steps/s of the steps this process ran after its first (compiling) one, checkpoints
    # included; a resumed stage counts only its own part
    ev.update({**run, "wall_s": time.perf_counter() - t0})
    if pseudo is not None:
      ev["pseudo_per_image"] = float((pseudo["labels_NG"] >= 0).sum(1).mean())
    write_json(out / stage / "eval.json", ev)
    results[stage] = ev
    write_json(results_file, results)
  return results
