"""The method contract: what every TTT / TTA method gives the runner.

A method turns a config and a source model into a `Plan`: the engine's learner
and static step settings, the runtime settings of one item (a video, a scene),
the variables split by what updates them, the per-tick schedule, how an item's
raw inputs become tick data, and which of its frames are scored. The runner
(`ttt_jax/runner/`) drives any plan with any driver and knows no method by name;
methods are looked up in `ttt_jax.methods.registry` by `config.method.kind`.

A streaming method (online TTT-MAE, DiTTA) schedules adapt-and-predict ticks over
frames; a point-cloud method makes a tick from a scene's points and image
features; a non-streaming training method schedules training ticks over its
items, then predicting ones (as `offline` does). None of them touches the engine.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Protocol

import ml_collections

from ttt_jax.engine.schedule import Schedule
from ttt_jax.engine.step import Learner, StepConfig

PyTree = Any


@dataclasses.dataclass(frozen=True)
class SourceModel:
  """The model a run starts from.

  Attributes:
    variables: the model's variables (a nested dict: 'params', 'batch_stats', ...).
    cfg: its architecture config (e.g. `SegFormerConfig`).
    meta: where it came from (path, digest, training recipe), for results.json.
  """
  variables: PyTree
  cfg: Any
  meta: dict


@dataclasses.dataclass(frozen=True, kw_only=True)
class Variables:
  """The initial variables, split by what updates them (see `TTTState`)."""
  trainable: PyTree
  stats: PyTree
  frozen: PyTree
  method_state: PyTree = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
  """A method made concrete for one config and model.

  Attributes:
    learner: the engine's `Learner` (loss, predictor, optimizer, hooks).
    step_config: static step settings; plans with equal static settings and
      shapes share one compiled program.
    variables: the initial variables.
    hparams: `num_frames -> runtime settings` of an item (`step.make_hparams`):
      memory flags, window, steps, learning rates.
    schedule: `num_frames -> Schedule`, the item's ticks.
    make_ticks: `(item_id, inputs) -> tick data`, a pytree whose leaves have a
      leading frame axis; it validates the inputs (clear errors naming the item)
      and attaches what the method needs (e.g. cached targets).
    first_scored: `num_frames -> index` of the first scored frame (the scoring
      protocol; DiTTA scores only frames after its warm-up).
    program_key: everything the compiled step depends on besides input shapes
      (`program_key`); plans with equal keys share compiled programs.
  """
  learner: Learner
  step_config: StepConfig
  variables: Variables
  hparams: Callable[[int], dict]
  schedule: Callable[[int], Schedule]
  make_ticks: Callable[[str, Any], PyTree]
  first_scored: Callable[[int], int] = lambda num_frames: 0
  program_key: str = ""


# `config.method` keys that only reach the runtime settings, the schedule, the tick
# data or the scoring, never the compiled step. Every other key is part of the
# program key, so a key a new method adds is static until listed here.
RUNTIME_KEYS = ("name", "mode", "window", "steps_per_frame", "reset_opt_state", "ema_decay",
                "offline_iters", "warmup_fraction", "warmup_passes", "eval_after_warmup",
                "optimizer.lr", "targets")


def program_key(config, model_cfg, step_config, runtime_keys: tuple[str, ...] = ()) -> str:
  """The static identity of a method's compiled step: `config.method` without its
  runtime keys (`RUNTIME_KEYS` and a method's own `runtime_keys`), the model
  architecture and the static step settings."""
  m = json.loads(config.method.to_json())
  for k in RUNTIME_KEYS + tuple(runtime_keys):
    node, *rest = k.split(".")
    if rest:
      m.get(node, {}).pop(rest[0], None)
    else:
      m.pop(node, None)
  return json.dumps([m, repr(model_cfg), repr(step_config)], sort_keys=True)


class Method(Protocol):
  """A TTT / TTA method (registered in `ttt_jax.methods.registry`)."""

  def build(self, config: ml_collections.ConfigDict, model: SourceModel) -> Plan:
    """Builds the method's plan.

    Args:
      config: the whole run config; the method reads `config.method` (the shared
        keys and its own block, e.g. `config.method.ditta`) and `config.engine`
        (static program sizes).
      model: the source model.
    Returns:
      The plan the runner drives. It must not modify `config`.
    """
