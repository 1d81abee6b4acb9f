"""Training TTT-KD's stand-in 2D teacher (`models.room_teacher`) once, on rooms in
random styles and looks (`rooms.broad_views`): pixel cross-entropy of its training
head over its stride-4 features, upsampled bilinearly; horizontal flips. The head is
dropped from use afterwards: TTT-KD reads the features only.

  ttt-jax pretrain configs/room_teacher.py --out /tmp/teacher
  # shipped: cp -r /tmp/teacher/model ttt_jax/assets/room_teacher
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ttt_jax.checkpoint.model_io import save_model
from ttt_jax.data import rooms
from ttt_jax.models.precision import apply_in
from ttt_jax.models.room_teacher import RoomTeacher, TeacherConfig
from ttt_jax.train.loop import TrainState, train_loop


def make_step(model: RoomTeacher, tx, compute_dtype: str = "float32"):
  def loss_fn(params, imgs, labs, key):
    flip = jax.random.bernoulli(key, 0.5, (imgs.shape[0],))
    imgs = jnp.where(flip[:, None, None, None], imgs[:, :, ::-1], imgs)
    labs = jnp.where(flip[:, None, None], labs[:, :, ::-1], labs)
    logits = apply_in(compute_dtype, model.apply, {"params": params}, imgs)
    b, h, w = labs.shape
    logits = jax.image.resize(logits, (b, h, w, logits.shape[-1]), "bilinear")
    valid = labs >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, labs, 0))
    ce = jnp.sum(ce * valid) / jnp.maximum(valid.sum(), 1)
    acc = jnp.sum((logits.argmax(-1) == labs) * valid) / jnp.maximum(valid.sum(), 1)
    return ce, acc

  @functools.partial(jax.jit, donate_argnums=0)  # the old state's buffers hold the new one
  def step(state, imgs, labs, key):
    (ce, acc), g = jax.value_and_grad(loss_fn, has_aux=True)(state.params, imgs, labs, key)
    upd, opt = tx.update(g, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, upd), opt_state=opt, step=state.step + 1), \
        {"ce": ce, "acc": acc}
  return step


def train_teacher(c, out_dir, *, progress: bool = True, stop_at: int | None = None) -> Path | None:
  """Trains per `c` (configs/room_teacher.py); returns the model dir (None if stopped)."""
  out = Path(out_dir).absolute()
  out.mkdir(parents=True, exist_ok=True)
  cfg = TeacherConfig(widths=tuple(c.model.widths), feature_dim=c.model.feature_dim,
                      num_classes=rooms.NUM_CLASSES)
  model = RoomTeacher(cfg)
  imgs, labs = rooms.broad_views(c.data.seed, c.data.num_rooms, c.data.views, tuple(c.data.image_hw))
  sched = optax.warmup_cosine_decay_schedule(0.0, c.lr, c.warmup_steps, c.steps, c.lr * 0.01)
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=c.weight_decay))
  params = model.init(jax.random.key(c.seed), jnp.asarray(imgs[:1]))["params"]
  state = TrainState(params, {}, tx.init(params), jnp.zeros((), jnp.int32))   # no BatchNorm

  def batch(s):
    idx = np.random.default_rng([c.seed, s]).integers(0, len(imgs), c.batch_size)
    return imgs[idx], labs[idx]

  state, log, secs = train_loop(state, make_step(model, tx, c.model.get("compute_dtype", "float32")), batch, steps=c.steps, ckpt_dir=out / "checkpoints",
                                seed=c.seed, save_every=c.save_every, log_every=c.log_every,
                                desc="teacher", progress=progress, stop_at=stop_at)
  if int(state.step) < c.steps:
    return None
  meta = {"trained_by": "ttt-jax pretrain (room teacher)", "config": json.loads(c.to_json()),
          "seconds": secs, "images": int(len(imgs)), "log": log[-5:],
          "note": "a stand-in for DINOv2 trained on synthetic rooms; not DINOv2"}
  return save_model(out / "model", {"params": state.params}, cfg, meta)
