"""TTT-KD (3DV 2025) and its baselines on point clouds, one `Method` for all of them.

A tick is a scene: its padded points, their lifted teacher features and view counts
(`kd_targets`), and its serialisation levels (`ptv3.scene_levels`, computed once per
scene). The memory holds that one scene; each step's batch is the scene itself.

| kind    | trains (method.trainable)     | each adapting tick                          |
| ------- | ----------------------------- | ------------------------------------------- |
| none    | nothing                       | predict with the source model (source only) |
| ttt_kd  | the 3D backbone               | n steps of the distillation loss, predict   |
| entropy | the backbone's norm affines   | Tent: the scene's BN statistics, entropy    |
| norm    | nothing                       | the scene's BN statistics, recomputed       |

Per scene (`method.stride` 0): every scene is its own item, starting from the source
weights, with a fresh AdamW state (mode 'reset'): n = `method.steps_per_frame` steps,
then the prediction with everything frozen. TTT-KD-O (`method.stride` s >= 1): the
scenes of a split form one stream; the weights and AdamW's state are carried across
scenes and one step is taken on every s-th scene, before predicting it.

Choices the paper leaves open (METHODS.md), as its authors' earlier code and
Pointcept would make them:
- distance: cosine (`objectives.feature_distill`; DINOv2 feature norms vary, the
  semantics live in the direction), over the points a view sees;
- what moves: the backbone psi_3D only; both projectors stay as trained jointly, so
  the class head keeps reading the space it was trained on;
- BatchNorm (`method.ttt_kd.bn`): 'scene' (the default, chosen on the tuning seed,
  see `point_defaults`): each step's pass normalises with the scene's own
  statistics (train mode, momentum 0), and the prediction uses those of the last
  step's pass, so the statistics follow the adapting weights; 'source' keeps the source statistics
  (eval mode) throughout. Either way no stochastic depth: one scene is one batch;
- optimizer: AdamW (Pointcept's), lr 3e-5 and 100 steps (tuned), weight decay 0.05
  except on normalisation layers, global-norm clip 1.0, fresh per scene;
- visibility: `method.ttt_kd.tolerance` metres (default 0.1, see `projection`).
The baselines: Tent (entropy of the scene's point predictions, the scene's BN
statistics, norm affines trained) and recomputed normalisation statistics (BN on the
scene's own statistics, nothing trained).
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ttt_jax.data.point_inputs import pad_scene
from ttt_jax.engine.schedule import Schedule, make_schedule
from ttt_jax.engine.state import split_variables
from ttt_jax.engine.step import Learner, StepConfig, make_hparams
from ttt_jax.methods.base import Plan, SourceModel, Variables, program_key
from ttt_jax.methods.kd_targets import Teacher, check_scene_views, scene_features, scene_targets
from ttt_jax.methods.optim import lr_hparams, make_optimizer
from ttt_jax.models.precision import apply_in
from ttt_jax.models.ptv3 import check_extent, scene_levels
from ttt_jax.objectives.entropy import entropy_loss
from ttt_jax.objectives.feature_distill import feature_distill_loss

KINDS = ("none", "ttt_kd", "entropy", "norm")
BN_MODES = ("source", "scene")
# `config.method` keys that only shape the tick data or the schedule, never the step.
RUNTIME_KEYS = ("stride", "ttt_kd.teacher", "ttt_kd.teacher_path", "ttt_kd.features_dir",
                "ttt_kd.tolerance", "ttt_kd.max_views")


def _one(batch):
  """The scene of a batch of one (every step's batch is the tick's scene)."""
  return jax.tree.map(lambda x: x[0], batch)


def _loss_fn(model, stats_model, m, compute_dtype: str):
  kind, distance = m.kind, m.ttt_kd.distance
  apply = functools.partial(apply_in, compute_dtype, model.apply)
  stats_apply = functools.partial(apply_in, compute_dtype, stats_model.apply)
  if m.ttt_kd.bn not in BN_MODES:
    raise ValueError(f"unknown method.ttt_kd.bn {m.ttt_kd.bn!r}; expected one of {BN_MODES}")
  scene_bn = m.ttt_kd.bn == "scene"
  if kind == "none":
    return None

  def scene_pass(ctx, v, s, method):
    """A train-mode pass on the scene's own BatchNorm statistics (momentum 0): the
    outputs of `method` (None: the model's call), and the stats with the scene's in
    place (no gradient)."""
    out, upd = stats_apply(v, s["feat_N6"], s["levels"], train=True, method=method,
                                 mutable=["batch_stats"])
    return out, {**ctx.stats, "batch_stats": jax.lax.stop_gradient(upd["batch_stats"])}

  def loss(trainable, ctx, batch, key):
    s = _one(batch)
    v = ctx.variables(trainable)
    if kind == "ttt_kd":
      if scene_bn:   # BatchNorm on the scene's statistics, which the prediction then uses
        (_, kd), stats = scene_pass(ctx, v, s, None)
      else:
        (_, kd), stats = apply(v, s["feat_N6"], s["levels"], train=False), ctx.stats
      kd_loss = feature_distill_loss(kd, s["teacher_NC"], s["views_N"], s["valid_N"], distance)
      return kd_loss, (stats, ctx.method_state)
    logits, stats = scene_pass(ctx, v, s, "segment")
    if kind == "norm":
      return jnp.zeros((), jnp.float32), (stats, ctx.method_state)
    return entropy_loss(logits, s["valid_N"]), (stats, ctx.method_state)
  return loss


def _predict_fn(model, compute_dtype: str):
  def predict(trainable, ctx, data):
    logits = apply_in(compute_dtype, model.apply, ctx.variables(trainable), data["feat_N6"], data["levels"],
                      train=False, method="segment")
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return predict


def stream_schedule(num_scenes: int, stride: int) -> Schedule:
  """TTT-KD-O: every scene pushed and predicted, an adapting step on every `stride`-th
  (scenes 0, s, 2s, ...)."""
  idx = np.arange(num_scenes, dtype=np.int32)
  on = np.ones(num_scenes, bool)
  return Schedule(idx, on, idx % stride == 0, on.copy())


class SceneTicks:
  """`make_ticks` of TTT-KD: validates a scene (or a stream's scenes), pads it, reads
  or computes the teacher's features, lifts them onto the points and computes the
  serialisation levels. Leaves get a leading scene axis."""

  def __init__(self, config, model_cfg):
    self.m, self.e, self.cfg = config.method, config.engine, model_cfg
    self._teacher = None
    self._levels = jax.jit(lambda c, v: scene_levels(c, v, model_cfg.backbone))

  def teacher(self) -> Teacher | None:
    k = self.m.ttt_kd
    if k.teacher == "room_teacher" and self._teacher is None:
      self._teacher = Teacher(k.teacher_path) if k.teacher_path else Teacher()
    return self._teacher

  def _padded(self, scene_id: str, scene) -> dict:
    """The scene's points and views validated; its padded arrays."""
    what = f"scene {scene_id}"
    arrays = pad_scene(scene.points, self.e.num_points, what)
    check_extent(arrays["coord_N3"], arrays["valid_N"], self.cfg.backbone, what)
    check_scene_views(what, scene.views)
    return arrays

  def _features(self, scene_id: str, scene) -> np.ndarray:
    k = self.m.ttt_kd
    return scene_features(scene_id, scene.views, teacher=k.teacher, features_dir=k.features_dir or None,
                          stand_in=self.teacher())

  def check(self, scene_id: str, scene) -> None:
    """Validates a scene without long work (points, views, and a cached feature file's
    scene and teacher). Errors name the scene or file."""
    self._padded(scene_id, scene)
    k = self.m.ttt_kd
    cached = Path(k.features_dir) / f"{scene_id}.npz" if k.features_dir else None
    if k.teacher == "dinov2" or (cached is not None and cached.exists()):
      self._features(scene_id, scene)

  def scene(self, scene_id: str, scene) -> dict:
    what = f"scene {scene_id}"
    arrays = self._padded(scene_id, scene)
    feats = self._features(scene_id, scene)   # validates a cached file as `check` does
    if feats.shape[-1] != self.cfg.teacher_dim:
      raise ValueError(f"{what}: teacher features of width {feats.shape[-1]}, the model's projector "
                       f"predicts {self.cfg.teacher_dim} (model teacher_dim)")
    k = self.m.ttt_kd
    return {"feat_N6": arrays["feat_N6"], "valid_N": arrays["valid_N"],
            **scene_targets(arrays, scene.views, feats, tolerance=k.tolerance, max_views=k.max_views, what=what),
            "levels": self._levels(arrays["coord_N3"], arrays["valid_N"])}

  def __call__(self, item_id: str, inputs):
    scenes = inputs if isinstance(inputs, (list, tuple)) else [(item_id, inputs)]
    if not scenes:
      raise ValueError(f"item {item_id}: no scenes")
    ticks = [self.scene(sid, s) for sid, s in scenes]
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *ticks)


class TTTKD:
  """TTT-KD, TTT-KD-O and the point baselines (`Method`); see the module docstring."""

  def build(self, config, model: SourceModel) -> Plan:
    m, e = config.method, config.engine
    if m.kind not in KINDS:
      raise ValueError(f"TTT-KD has no kind {m.kind!r}; expected one of {KINDS}")
    if m.batch_size != 1 or e.max_window != 1:
      raise ValueError("TTT-KD's batch is the tick's scene: method.batch_size and engine.max_window must be 1")
    cfg = model.cfg
    net = cfg.model()
    # The scene-statistics pass: BatchNorm in train mode storing the scene's own
    # statistics (momentum 0), without stochastic depth.
    stats_net = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, bn_momentum=0.0,
                                                                      drop_path=0.0)).model()
    dtype = config.model.get("compute_dtype", "float32")   # bfloat16: forward in bf16, state float32
    learner = Learner(loss_fn=_loss_fn(net, stats_net, m, dtype), predict_fn=_predict_fn(net, dtype),
                      optimizer=make_optimizer(m.optimizer))
    trainable, stats, frozen = split_variables(model.variables, tuple(m.trainable))
    step_cfg = StepConfig(memory_slots=1, max_steps=e.max_steps_per_frame, batch_size=1)
    stride = int(m.stride)
    adapts = m.kind != "none"

    def hparams(num_scenes: int):
      return make_hparams(carry_params=stride > 0, window=1, steps=m.steps_per_frame if adapts else 0,
                          reset_opt_state=stride == 0, cfg=step_cfg, **lr_hparams(m.optimizer))

    def schedule(num_scenes: int) -> Schedule:
      if stride > 0:
        return stream_schedule(num_scenes, stride)
      return make_schedule("reset" if adapts else "none", num_scenes)

    return Plan(learner=learner, step_config=step_cfg,
                variables=Variables(trainable=trainable, stats=stats, frozen=frozen),
                hparams=hparams, schedule=schedule, make_ticks=SceneTicks(config, cfg),
                program_key=program_key(config, cfg, step_cfg, RUNTIME_KEYS))
