"""Online TTT-MAE on video streams and its baselines, as engine configurations.

Each method is a `config.method` block (see configs/): an objective, a memory
mode, a trainable subset and optimizer settings. `build(...)` turns it into the
engine's `Learner` and `StepConfig` plus schedule arguments.

| method            | objective  | mode          | trains           |
| ----------------- | ---------- | ------------- | ---------------- |
| main_task         | none       | none          | nothing          |
| ttt_mae_no_mem    | mae        | reset         | all              |
| online_ttt_mae    | mae        | window (k=16) | all              |
| implicit_only     | mae        | implicit      | all              |
| explicit_only     | mae        | explicit      | all              |
| offline           | mae        | offline       | all              |
| norm_adapt        | norm       | implicit      | BN statistics *  |
| tent              | entropy    | implicit      | norm affine      |
| self_train        | self_train | implicit      | all              |

* A model whose heads keep no running statistics (the shipped 'builtin', GroupNorm)
  has none to adapt: norm adapt then predicts as the main task, as the reference's
  LN adapt does.

Reference settings (METHODS.md): AdamW, head lr 1e-4, encoder lr 0.1 x head,
weight decay 0.05, global-norm clip 0.01, optimizer state rebuilt every frame,
one step per frame, batch 32 from the window with replacement, own crop and
mask per sample. The crop is the reference's: a window at native scale, no resize,
no flip, no colour jitter (`method.crop='native'`, `method.crop_size` in pixels,
(0, 0) = the whole frame); `crop='resized'` is the earlier zoom-and-flip crop. TTT
steps run the encoder with stochastic depth (`method.drop_path`), as the
reference's train-mode steps do. `method.window_sampling='balanced'` is the
reference code's sampler (see `engine.memory.sample_indices`).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from ttt_jax.engine.schedule import MODES
from ttt_jax.engine.step import Learner, StepConfig
from ttt_jax.methods.augment import random_crop, random_resized_crop
from ttt_jax.methods.segformer_task import SegTask, normalise
from ttt_jax.objectives.class_balance import class_drift
from ttt_jax.objectives.entropy import entropy_loss
from ttt_jax.objectives.reconstruction import reconstruction_loss, visible_input
from ttt_jax.objectives.self_training import self_training_loss

OBJECTIVES = ("none", "mae", "entropy", "self_train", "norm")
CROPS = ("native", "resized")
SUBSETS = ("all", "heads", "decode_head", "norm", "none")


# ---------------------------------------------------------------------------
# Parameter subsets and optimizer
# ---------------------------------------------------------------------------


def trainable_predicate(subset: str):
  """Path -> bool for `split_params`. Only 'params' leaves are ever trained."""
  if subset not in SUBSETS:
    raise ValueError(f"unknown trainable subset {subset!r}; expected one of {SUBSETS}")

  def pred(path: tuple[str, ...]) -> bool:
    if path[0] != "params" or subset == "none":
      return False
    if subset == "all":
      return True
    if subset == "heads":
      return path[1] in ("decode_head", "recon")
    if subset == "decode_head":
      return path[1] == "decode_head"
    return any("norm" in p for p in path[1:-1]) and path[-1] in ("scale", "bias")
  return pred


def make_optimizer(m) -> optax.GradientTransformation:
  """Global-norm clip, then AdamW with the encoder at `encoder_lr_mult` x head lr."""

  def labels(tree):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "encoder" if any(getattr(k, "key", None) == "encoder" for k in path) else "head",
        tree)

  adamw = lambda lr: optax.adamw(lr, b1=m.b1, b2=m.b2, weight_decay=m.weight_decay)
  parts = optax.partition({"encoder": adamw(m.lr * m.encoder_lr_mult), "head": adamw(m.lr)}, labels)
  return optax.chain(optax.clip_by_global_norm(m.clip_norm), parts) if m.clip_norm > 0 else parts


# ---------------------------------------------------------------------------
# Learner
# ---------------------------------------------------------------------------


def _loss_fn(task: SegTask, m):
  obj = m.objective
  if obj not in OBJECTIVES:
    raise ValueError(f"unknown objective {obj!r}; expected one of {OBJECTIVES}")

  if m.crop not in CROPS:
    raise ValueError(f"unknown crop {m.crop!r}; expected one of {CROPS}")

  def views(batch, key):
    if m.crop == "native":
      return random_crop(key, normalise(batch), tuple(m.crop_size))
    return random_resized_crop(key, normalise(batch), min_scale=m.crop_min_scale, flip=m.flip)

  def loss(trainable, frozen, batch_BHWC, key):
    k_aug, k_obj, k_dp = jax.random.split(key, 3)
    if obj == "mae":
      imgs = views(batch_BHWC, k_aug)
      dp_key = k_dp if m.drop_path else None
      return reconstruction_loss(lambda x: task.reconstruct(trainable, frozen, x, key=dp_key), imgs, k_obj,
                                 patch=m.patch, ratio=m.mask_ratio, masked_only=m.masked_only,
                                 norm_pix=m.norm_pix), frozen
    if obj == "entropy":
      x = visible_input(views(batch_BHWC, k_aug))
      return entropy_loss(task.segment(trainable, frozen, x)), frozen
    if obj == "self_train":
      return self_training_loss(lambda x: task.segment(trainable, frozen, x), views(batch_BHWC, k_aug),
                                k_obj, threshold=m.st_threshold, mask_ratio=m.st_mask_ratio,
                                patch=m.patch), frozen
    if obj == "norm":
      # Recompute BatchNorm statistics on the test batch (no gradient step). A model
      # whose heads keep no running statistics (GroupNorm/LayerNorm, as the reference's)
      # normalises each input by itself already: nothing to adapt, as its "LN adapt".
      if "batch_stats" not in frozen:
        return jnp.zeros((), jnp.float32), frozen
      x = visible_input(normalise(batch_BHWC))
      _, upd = task.segment(trainable, frozen, x, train=True, key=k_obj)
      new = dict(frozen)
      new["batch_stats"] = {**frozen["batch_stats"], **upd["batch_stats"]}
      return jnp.zeros((), jnp.float32), new
    return jnp.zeros((), jnp.float32), frozen
  return loss


def _class_balance_reset(task: SegTask, tolerance: int):
  """Reset when the adapted model's number of predicted classes on the frame drifts
  from the initial model's by more than `tolerance`."""
  def reset_fn(trainable, anchor, frozen, frame_HWC):
    now = task.logits_full(trainable, frozen, frame_HWC[None])[0]
    init = task.logits_full(anchor, frozen, frame_HWC[None])[0]
    return class_drift(now, init, tolerance=tolerance)
  return reset_fn


def build(task: SegTask, m) -> tuple[Learner, StepConfig, dict[str, Any]]:
  """`(learner, step_config, schedule_kwargs)` for a `config.method` block."""
  if m.mode not in MODES:
    raise ValueError(f"unknown memory mode {m.mode!r}; expected one of {MODES}")
  learner = Learner(loss_fn=_loss_fn(task, m), predict_fn=task.predict_labels,
                    optimizer=make_optimizer(m),
                    reset_fn=_class_balance_reset(task, m.cb_tolerance) if m.class_balance_reset else None)
  adapting = m.mode != "none" and m.objective != "none"
  step_cfg = StepConfig(
      carry_params=m.mode not in ("reset", "explicit"),
      window=m.window if m.mode in ("window", "explicit", "offline", "warmup_freeze") else 1,
      steps_per_frame=m.steps_per_frame if adapting else 0,
      batch_size=m.batch_size, reset_opt_state=m.reset_opt_state,
      ema_decay=m.ema_decay if m.ema_decay > 0 else None, sampling=m.window_sampling)
  sched = dict(offline_iters=m.offline_iters, warmup_fraction=m.warmup_fraction,
               warmup_passes=m.warmup_passes)
  return learner, step_cfg, sched
