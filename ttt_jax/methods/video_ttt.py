"""Online TTT-MAE on video streams and its baselines, one `Method` for all of them.

`method.kind` picks the objective; the memory mode, window, steps and learning
rate are runtime settings, so every run of one kind on one model shares one
compiled program (the main task is kind 'mae' in mode 'none': it never adapts).

| config            | kind       | mode          | trains (method.trainable) |
| ----------------- | ---------- | ------------- | ------------------------- |
| main_task         | mae        | none          | (nothing: never adapts)   |
| ttt_mae_no_mem    | mae        | reset         | encoder + recon head      |
| online_ttt_mae    | mae        | window (k=16) | encoder + recon head      |
| implicit_only     | mae        | implicit      | encoder + recon head      |
| explicit_only     | mae        | explicit      | encoder + recon head      |
| offline           | mae        | offline       | encoder + recon head      |
| norm_adapt        | norm       | implicit      | BN statistics *           |
| tent              | entropy    | implicit      | norm affine               |
| self_train        | self_train | implicit      | encoder + main head       |

* A model whose heads keep no running statistics (the shipped 'builtin', GroupNorm)
  has none to adapt: norm adapt then predicts as the main task, as the reference's
  LN adapt does.

Reference settings (METHODS.md and the reference code's optimizer): AdamW, head
lr 1e-4, encoder lr 0.1 x head, weight decay 0.05 except on normalisation layers,
global-norm clip 0.01, AdamW's state kept from frame to frame (the code's default;
`method.reset_opt_state=True` rebuilds it), one step per frame, batch 32 from the window with replacement, own crop and
mask per sample. The crop is the reference's: a window at native scale, no resize,
no flip, no colour jitter (`method.augment.crop='native'`, `crop_size` in pixels,
(0, 0) = the whole frame); `crop='resized'` is a zoom-and-flip crop. TTT steps run
the encoder with stochastic depth (`method.mae.drop_path`), as the reference's
train-mode steps do. `method.window_sampling='balanced'` is the reference code's
sampler (see `engine.memory.sample_indices`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ttt_jax.engine.state import path_keys, path_matcher, split_variables
from ttt_jax.engine.step import Learner
from ttt_jax.methods.augment import random_crop, random_resized_crop
from ttt_jax.methods.base import Plan, SourceModel, Variables, program_key
from ttt_jax.methods.defaults import ALL, VIDEO_KINDS
from ttt_jax.methods.optim import make_optimizer
from ttt_jax.methods.segformer_task import SegTask
from ttt_jax.methods.video_plan import (first_scored_fn, fit_memory, frame_ticks, runtime_hparams,
                                        schedule_fn, step_config)
from ttt_jax.models.inputs import normalise, visible_input
from ttt_jax.objectives.class_balance import class_drift
from ttt_jax.objectives.entropy import entropy_loss
from ttt_jax.objectives.reconstruction import masked_reconstruction_loss, patch_mask
from ttt_jax.objectives.self_training import self_training_loss

KINDS = VIDEO_KINDS
# The kinds that adapt, in the order of a shared program's branches.
OBJECTIVES = ("mae", "entropy", "self_train", "norm")
CROPS = ("native", "resized")


def _views(m):
  a = m.augment
  if a.crop not in CROPS:
    raise ValueError(f"unknown crop {a.crop!r} (method.augment.crop); expected one of {CROPS}")

  def views(batch, key):
    if a.crop == "native":
      return random_crop(key, normalise(batch), tuple(a.crop_size))
    return random_resized_crop(key, normalise(batch), min_scale=a.crop_min_scale, flip=a.flip)
  return views


def _loss_fn(task: SegTask, m, kind: str):
  """The adaptation loss of `kind` (`engine.step.LossFn`); None for kind 'none'."""
  if kind == "none":
    return None
  if kind == "norm":
    def norm_loss(trainable, ctx, batch_BHWC, key):
      # Recompute BatchNorm statistics on the test batch (no gradient step). A model
      # whose heads keep no running statistics (GroupNorm/LayerNorm, as the reference's)
      # normalises each input by itself already: nothing to adapt, as its "LN adapt".
      if "batch_stats" not in ctx.stats:
        return jnp.zeros((), jnp.float32), (ctx.stats, ctx.method_state)
      _, k_obj, _ = jax.random.split(key, 3)
      x = visible_input(normalise(batch_BHWC))
      _, upd = task.segment(ctx.variables(trainable), x, train=True, key=k_obj)
      stats = {**ctx.stats, "batch_stats": {**ctx.stats["batch_stats"], **upd["batch_stats"]}}
      return jnp.zeros((), jnp.float32), (stats, ctx.method_state)
    return norm_loss

  views = _views(m)
  mae_loss = mae_views_loss(task, m) if kind == "mae" else None

  def loss(trainable, ctx, batch_BHWC, key):
    k_aug, k_obj, k_dp = jax.random.split(key, 3)
    v = ctx.variables(trainable)
    keep = (ctx.stats, ctx.method_state)
    if kind == "mae":
      o = m.mae
      imgs = views(batch_BHWC, k_aug)
      b, h, w, _ = imgs.shape
      mask = patch_mask(k_obj, b, h, w, patch=o.patch, ratio=o.mask_ratio)
      return mae_loss(trainable, ctx, imgs, mask, k_dp), keep
    if kind == "entropy":
      x = visible_input(views(batch_BHWC, k_aug))
      return entropy_loss(task.segment(v, x)), keep
    s = m.self_train
    return self_training_loss(lambda x: task.segment(v, x), views(batch_BHWC, k_aug), k_obj,
                              threshold=s.threshold, mask_ratio=s.mask_ratio, patch=s.patch), keep
  return loss


def mae_views_loss(task: SegTask, m):
  """TTT-MAE's loss on given views and masks: `(trainable, ctx, images_BHW3 (normalised),
  mask_BHW (1 = masked), key) -> scalar`; `key` draws stochastic depth
  (`method.mae.drop_path`). The step's loss draws the views and masks, then calls this;
  the parity test with the PyTorch loop feeds both the same ones."""
  o = m.mae

  def loss(trainable, ctx, images_BHW3, mask_BHW, key):
    v = ctx.variables(trainable)
    dp_key = key if o.drop_path else None
    return masked_reconstruction_loss(lambda x: task.reconstruct(v, x, key=dp_key), images_BHW3,
                                      mask_BHW, patch=o.patch, masked_only=o.masked_only,
                                      norm_pix=o.norm_pix)
  return loss


def _class_balance_reset(task: SegTask, tolerance: int):
  """Reset when the adapted model's number of predicted classes on the frame drifts
  from the initial model's by more than `tolerance`."""
  def reset_fn(trainable, ctx, frame_HWC):
    now = task.logits_full(ctx.variables(trainable), frame_HWC[None])[0]
    init = task.logits_full(ctx.variables(ctx.anchor), frame_HWC[None])[0]
    return class_drift(now, init, tolerance=tolerance)
  return reset_fn


def _shared_loss_fn(task: SegTask, m):
  """Every kind's loss in one function: `hparams['objective']` (an index into
  `OBJECTIVES`) picks the branch at run time (`engine.share_kinds`)."""
  branches = [_loss_fn(task, m, k) for k in OBJECTIVES]

  def loss(trainable, ctx, batch_BHWC, key):
    return jax.lax.switch(ctx.hparams["objective"], branches, trainable, ctx, batch_BHWC, key)
  return loss


def _shared_hparams(m, trainable) -> dict:
  """The shared program's runtime choices for `m.kind`: its objective and its trainable
  subset as a mask over `trainable` (every parameter)."""
  match = path_matcher(tuple(m.trainable))
  mask = jax.tree_util.tree_map_with_path(lambda path, _: match(path_keys(path)), trainable)
  objective = OBJECTIVES.index(m.kind) if m.kind != "none" else 0   # 'none' never adapts
  return {"objective": objective, "trainable_mask": mask}


class VideoTTT:
  """Online TTT-MAE, Tent, norm adapt, self-training and the main task (`Method`).

  With `engine.share_kinds` every kind compiles to one program per model: the
  objective is a runtime switch (`lax.switch` on `hparams['objective']`) and the
  trainable subset a runtime mask over all parameters (`engine.step.MASK`:
  untrained parameters get no gradient, no update and no weight decay), so a
  process that runs several kinds (the demo) compiles once. A run of one kind
  compiles faster without it (its program holds only its own objective).
  """

  def build(self, config, model: SourceModel) -> Plan:
    m = config.method
    if m.kind not in KINDS:
      raise ValueError(f"video TTT has no kind {m.kind!r}; expected one of {KINDS}")
    task = SegTask(model.cfg)
    shared = bool(config.engine.get("share_kinds", False))
    cb = m.get("class_balance")
    learner = Learner(loss_fn=_shared_loss_fn(task, m) if shared else _loss_fn(task, m, m.kind),
                      predict_fn=lambda tr, ctx, f: task.predict_labels(ctx.variables(tr), f),
                      optimizer=make_optimizer(m.optimizer),
                      reset_fn=_class_balance_reset(task, cb.tolerance) if cb is not None and cb.enabled else None)
    trainable, stats, frozen = split_variables(model.variables, ALL if shared else tuple(m.trainable))
    variables = Variables(trainable=trainable, stats=stats, frozen=frozen)
    extra = _shared_hparams(m, trainable) if shared else {}
    cfg = step_config(config)
    cfg = fit_memory(config, cfg, learner, variables, runtime_hparams(config, cfg, **extra))
    return Plan(learner=learner, step_config=cfg, variables=variables,
                hparams=runtime_hparams(config, cfg, **extra),
                schedule=schedule_fn(m), make_ticks=frame_ticks(task), first_scored=first_scored_fn(m),
                program_key=program_key(config, model.cfg, cfg, ("kind", "trainable") if shared else ()))
