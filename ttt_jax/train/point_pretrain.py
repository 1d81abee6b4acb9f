"""TTT-KD's joint training on the source dataset: the PTv3 backbone with its two
projectors, cross-entropy on the class head (ignore -1) plus `kd_weight` x the
distillation loss of the feature projector against the frozen teacher's lifted
features (cosine, `objectives.feature_distill`).

One scene per step (its BatchNorm statistics are the scene's), augmented as
Pointcept's ScanNet recipe does in spirit: a random rotation about +z, a random
flip of x, a scale in [0.9, 1.1] and a small colour jitter; the serialisation levels
are recomputed inside the step from the augmented coordinates. Teacher features are
lifted once per scene before training (they do not depend on the augmentation:
points keep their views). AdamW with warm-up and cosine decay, weight decay 0.05
except on normalisation layers, global-norm clip 1.

Checkpoints with orbax every `save_every` steps; a rerun with the same `--out`
resumes. The final model goes to `OUT/model` (`checkpoint.model_io`, arch point_seg).

  ttt-jax pretrain configs/pretrain_ttt_kd.py --out /tmp/kd_src
  # shipped: cp -r /tmp/kd_src/model ttt_jax/assets/point_seg_rooms
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm.auto import tqdm

from ttt_jax.checkpoint.model_io import save_model
from ttt_jax.data import rooms
from ttt_jax.data.point_inputs import pad_scene
from ttt_jax.methods.defaults import NORM
from ttt_jax.methods import optim
from ttt_jax.methods.kd_targets import Teacher, check_scene_views, scene_targets
from ttt_jax.models.point_seg import init_variables, point_seg_config
from ttt_jax.models.precision import apply_in
from ttt_jax.models.ptv3 import check_extent, scene_levels
from ttt_jax.objectives.feature_distill import feature_distill_loss
from ttt_jax.train.loop import TrainState, train_loop


def source_scenes(c, teacher: Teacher, progress: bool = True) -> dict[str, np.ndarray]:
  """Every training scene padded and stacked (`S, N, ...`), with its lifted teacher
  features and view counts."""
  rows = []
  for s in tqdm(rooms.iter_scenes(c.data.dataset, "train", seed=c.data.seed, num_scenes=c.data.num_scenes,
                                  size=c.data.size), total=c.data.num_scenes, desc="scenes", disable=not progress):
    what = f"scene {s.points.scene_id}"
    a = pad_scene(s.points, c.num_points, what)
    check_scene_views(what, s.views)
    rows.append({**a, **scene_targets(a, s.views, teacher.features(s.views.color_VHW3), tolerance=c.tolerance,
                                      what=what)})
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def augment(key, coord_N3, feat_N6, valid_N):
  """Rotation about +z, x flip, scale, colour jitter (normals rotate with the points)."""
  k_rot, k_flip, k_scale, k_col = jax.random.split(key, 4)
  a = jax.random.uniform(k_rot, (), minval=0.0, maxval=2 * jnp.pi)
  flip = jnp.where(jax.random.bernoulli(k_flip), -1.0, 1.0)
  r = jnp.array([[jnp.cos(a), -jnp.sin(a), 0.0], [jnp.sin(a), jnp.cos(a), 0.0], [0.0, 0.0, 1.0]])
  r = r * jnp.array([flip, 1.0, 1.0])[:, None]
  centre = jnp.sum(coord_N3 * valid_N[:, None], 0) / jnp.maximum(valid_N.sum(), 1)
  coord = (coord_N3 - centre[None]) @ r.T * jax.random.uniform(k_scale, (), minval=0.9, maxval=1.1)
  colour = jnp.clip(feat_N6[:, :3] + 0.05 * jax.random.normal(k_col, (1, 3)), -1.0, 1.0)
  feat = jnp.concatenate([colour, feat_N6[:, 3:] @ r.T], axis=1)
  return coord, jnp.where(valid_N[:, None], feat, 0.0)


def make_step(cfg, tx, c):
  model = cfg.model()
  # model.compute_dtype bfloat16: the forward in bf16, state and losses float32
  apply = functools.partial(apply_in, c.model.get("compute_dtype", "float32"), model.apply)

  def loss_fn(params, batch_stats, s, key):
    k_aug, k_drop = jax.random.split(key)
    coord, feat = augment(k_aug, s["coord_N3"], s["feat_N6"], s["valid_N"])
    levels = scene_levels(coord, s["valid_N"], cfg.backbone)
    (logits, kd), upd = apply({"params": params, "batch_stats": batch_stats}, feat, levels, train=True,
                                    rngs={"dropout": k_drop}, mutable=["batch_stats"])
    lab = s["label_N"]
    ok = s["valid_N"] & (lab >= 0)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(ok, lab, 0))
    ce = jnp.sum(ce * ok) / jnp.maximum(ok.sum(), 1)
    kd_loss = feature_distill_loss(kd, s["teacher_NC"], s["views_N"], s["valid_N"], c.distance)
    acc = jnp.sum((logits.argmax(-1) == lab) * ok) / jnp.maximum(ok.sum(), 1)
    return ce + c.kd_weight * kd_loss, (upd["batch_stats"], ce, kd_loss, acc)

  @functools.partial(jax.jit, donate_argnums=0)  # the old state's buffers hold the new one
  def step(state, scene, key):
    (loss, (bs, ce, kd, acc)), g = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats, scene, key)
    upd, opt = tx.update(g, state.opt_state, state.params)
    return (TrainState(optax.apply_updates(state.params, upd), bs, opt, state.step + 1),
            {"ce": ce, "kd": kd, "acc": acc})
  return step


def make_optimizer(c):
  """Global-norm clip 1, then AdamW on the warm-up + cosine schedule, no weight decay on
  normalisation layers (`methods.optim.make_optimizer` with the schedule as its lr)."""
  sched = optax.warmup_cosine_decay_schedule(0.0, c.lr, c.warmup_steps, c.steps, c.lr * 0.01)
  block = ml_collections.ConfigDict(dict(lr=c.lr, lr_groups=(), weight_decay=c.weight_decay, no_decay=NORM,
                                         b1=0.9, b2=0.999, clip_norm=1.0))
  return optim.make_optimizer(block)({"lr": sched})


def pretrain_points(c, out_dir, *, progress: bool = True, stop_at: int | None = None) -> Path | None:
  """Trains per `c` (configs/pretrain_ttt_kd.py); returns the model dir (None if stopped)."""
  out = Path(out_dir).absolute()
  out.mkdir(parents=True, exist_ok=True)
  teacher = Teacher(c.teacher_path) if c.teacher_path else Teacher()
  cfg = point_seg_config(c.model.size, rooms.NUM_CLASSES, teacher.dim)
  data = source_scenes(c, teacher, progress)
  for i in range(len(data["valid_N"])):  # rotated (x sqrt 2 at most) and scaled (x 1.1) in training
    check_extent(data["coord_N3"][i] * 1.56, data["valid_N"][i], cfg.backbone, f"training scene {i}")
  v = init_variables(cfg, jax.random.key(c.seed))
  tx = make_optimizer(c)
  state = TrainState(v["params"], v["batch_stats"], tx.init(v["params"]), jnp.zeros((), jnp.int32))

  def batch(s):
    i = int(np.random.default_rng([c.seed, s]).integers(len(data["valid_N"])))
    return ({k: a[i] for k, a in data.items()},)

  state, log, secs = train_loop(state, make_step(cfg, tx, c), batch, steps=c.steps, ckpt_dir=out / "checkpoints",
                                seed=c.seed, save_every=c.save_every, log_every=c.log_every,
                                desc="pretrain points", progress=progress, stop_at=stop_at)
  if int(state.step) < c.steps:
    return None
  meta = {"trained_by": "ttt-jax pretrain (TTT-KD joint)", "config": json.loads(c.to_json()),
          "seconds": secs, "teacher_digest": teacher.digest, "log": log[-5:]}
  return save_model(out / "model", {"params": state.params, "batch_stats": state.batch_stats}, cfg, meta)
