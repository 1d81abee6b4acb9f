"""What the video methods share in their plans: static step settings from the
config, runtime settings per video, the schedule, the tick data and the scoring
protocol."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ttt_jax.data.checks import check_frames
from ttt_jax.engine.microbatch import fit_micro_batches
from ttt_jax.engine.schedule import make_schedule, mode_settings, warmup_frames
from ttt_jax.engine.state import Context
from ttt_jax.engine.step import Learner, StepConfig, make_hparams
from ttt_jax.methods.optim import lr_hparams
from ttt_jax.methods.segformer_task import SegTask, check_frame_size


def frame_ticks(task: SegTask):
  """`make_ticks` of a method whose ticks are the frames themselves: validates them."""
  def make_ticks(item_id, frames_THWC):
    frames = check_frames(frames_THWC, f"video {item_id}")
    check_frame_size(task.cfg, *frames.shape[1:3], f"video {item_id}")
    return frames
  return make_ticks


def step_config(config) -> StepConfig:
  """The static step settings shared by the video methods (`config.engine` sizes)."""
  m, e = config.method, config.engine
  return StepConfig(memory_slots=e.max_window, max_steps=e.max_steps_per_frame,
                    batch_size=m.batch_size, ema=m.ema_decay > 0, sampling=m.window_sampling,
                    micro_batches=m.get("micro_batches", 1))


def fit_memory(config, cfg: StepConfig, learner: Learner, variables, hparams) -> StepConfig:
  """`cfg` with the fewest micro-batches whose adapting step fits
  `method.memory_budget_gb` (0: `cfg` unchanged), for methods whose ticks are the
  frames (`engine.microbatch.fit_micro_batches`; the frames are `data.height x
  data.width`). Raises ValueError naming the budget when one sample does not fit."""
  budget = float(config.method.get("memory_budget_gb", 0.0))
  if budget <= 0 or learner.loss_fn is None:
    return cfg
  d = config.data
  v = variables
  ctx = Context(frozen=v.frozen, stats=v.stats, method_state=v.method_state,
                ema=v.trainable if cfg.ema else None, anchor=v.trainable,
                hparams=hparams(max(int(d.num_frames or 0), int(config.method.window), 1)))
  frame = jax.ShapeDtypeStruct((d.height, d.width, 3), jnp.uint8)
  micro, _ = fit_micro_batches(learner.loss_fn, v.trainable, ctx, frame, cfg.batch_size, budget,
                               name="method.memory_budget_gb")
  return dataclasses.replace(cfg, micro_batches=micro)


def runtime_hparams(config, cfg: StepConfig, **extra):
  """`num_frames -> hparams` of a video under `config.method` (mode settings, steps,
  learning rates, EMA); `extra` goes to `make_hparams` (e.g. `trainable_mask`)."""
  m = config.method

  def hparams(num_frames: int):
    mode = mode_settings(m.mode, m.window, num_frames)
    if mode["window"] > cfg.memory_slots:
      raise ValueError(f"mode {m.mode!r} needs a window of {mode['window']} frames but the memory "
                       f"holds engine.max_window={cfg.memory_slots}; raise engine.max_window")
    adapts = m.mode != "none" and m.kind != "none"
    return make_hparams(**mode, steps=m.steps_per_frame if adapts else 0,
                        reset_opt_state=m.reset_opt_state, ema_decay=m.ema_decay, cfg=cfg,
                        **lr_hparams(m.optimizer), **extra)
  return hparams


def schedule_fn(m):
  return lambda n: make_schedule(m.mode, n, offline_iters=m.offline_iters,
                                 warmup_fraction=m.warmup_fraction, warmup_passes=m.warmup_passes)


def first_scored_fn(m):
  """DiTTA's protocol scores the frames after the warm-up; the others every frame."""
  def first(num_frames: int) -> int:
    if not m.eval_after_warmup:
      return 0
    w = warmup_frames(num_frames, m.warmup_fraction)
    if w >= num_frames:
      raise ValueError(f"a warm-up of {w} frames leaves none of the {num_frames} to evaluate")
    return w
  return first
