"""DiTTA, and its baselines CoTTA and zero-shot refinement, as `Method`s.

DiTTA (METHODS.md): a fresh copy of the image model per video plus a momentum copy
(EMA 0.99, the engine's `TTTState.ema`); the decode head, a temporal fusion add-on
and a projection head are trained with AdamW (lr 1e-3, wd 0.01) for
`warmup_passes` = 5 passes over the warm-up frames, one step per frame on the
pair (t-1, t), in train mode (decoder BatchNorm on batch statistics, dropout);
then the model is frozen and predicts every frame, fusing plain and add-on
probabilities where the plain prediction is unreliable. Loss = CE(plain) +
CE(add-on) + mask contrast, each term switched by `method.ditta.addon / distill /
contrast`; without distillation the targets (and the contrast's objects) are the
momentum model's own predictions.

A tick carries `{'frame', 'prev', 'cls', 'obj', 'has_prev'}` (`pair_ticks`): the
frame, frame t-1, the cached class and object targets, and whether t-1 exists;
prediction reads the frame only.

As the reference (jihun1998/DiTTA, ditta/tta.py and ditta/segformer.py): the
distillation label is the ISS prediction wherever no object gives a class; both CE
terms and the contrast are averaged over all pixels; the contrast's classes are the
prototypes of the objects in the current frame; the add-on's value is frame t-1's
live logits (with gradient); the add-on and projection head start from PyTorch's
default init; the momentum model runs in train mode on the same clip and follows
the parameters after each optimizer step; prototype reliability is the entropy of
softmax(momentum probabilities); the decoder drops whole channels (Dropout2d) and
the encoder uses stochastic depth when the model config has a rate
(`model.drop_path_rate`; the reference's MiT-B5 uses 0.1).
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sam2_bridge import cache_schema
from ttt_jax.checkpoint.model_io import variables_digest
from ttt_jax.engine.schedule import warmup_frames
from ttt_jax.engine.state import split_variables
from ttt_jax.engine.step import Learner
from ttt_jax.methods import ditta_targets
from ttt_jax.methods.base import Plan, SourceModel, Variables, program_key
from ttt_jax.methods.optim import make_optimizer
from ttt_jax.methods.segformer_task import SegTask
from ttt_jax.methods.video_plan import (first_scored_fn, frame_ticks, runtime_hparams, schedule_fn,
                                        step_config)
from ttt_jax.models.inputs import normalise, visible_input
from ttt_jax.models.temporal_addon import ProjectionHead, TemporalAddon
from ttt_jax.objectives import ditta as obj

IGNORE = obj.IGNORE


# ---------------------------------------------------------------------------
# Tick data
# ---------------------------------------------------------------------------


def pair_ticks(frames_THW3, cls_THW=None, obj_THW=None) -> dict:
  """DiTTA's per-frame tick data: the frame, frame t-1 (frame 0 repeats itself),
  the class and object targets (uint8, IGNORE past the warm-up or without
  targets) and whether t-1 exists."""
  t, h, w, _ = frames_THW3.shape
  prev = np.concatenate([frames_THW3[:1], frames_THW3[:-1]])
  cls_p = np.full((t, h, w), IGNORE, np.uint8)
  obj_p = np.full((t, h, w), IGNORE, np.uint8)
  if cls_THW is not None:  # targets cover the warm-up frames only
    cls_p[:len(cls_THW)] = cls_THW
    obj_p[:len(obj_THW)] = obj_THW
  has_prev = np.arange(t) > 0
  return {"frame": frames_THW3, "prev": prev, "cls": cls_p, "obj": obj_p, "has_prev": has_prev}


# ---------------------------------------------------------------------------
# Variables
# ---------------------------------------------------------------------------


def _modules(d):
  return TemporalAddon(dim=d.dim, radius=d.radius), ProjectionHead(dim=d.dim)


def add_ditta_params(variables, task: SegTask, d, key):
  """The source model's variables plus randomly initialised add-on and projection head."""
  addon, proj = _modules(d)
  hid, c = task.cfg.decoder_hidden_size, task.cfg.num_labels
  k1, k2 = jax.random.split(key)
  f = jnp.zeros((1, 4, 4, hid))
  params = dict(variables["params"])
  params["ditta_addon"] = addon.init(k1, f, f, jnp.zeros((1, 4, 4, c)))["params"]
  params["ditta_proj"] = proj.init(k2, f)["params"]
  return {**variables, "params": params}


def _seg_variables(variables):
  """The segmentation model's variables (without the add-on and projection head)."""
  return {**variables, "params": {k: v for k, v in variables["params"].items() if not k.startswith("ditta_")}}


# ---------------------------------------------------------------------------
# DiTTA
# ---------------------------------------------------------------------------


def _ditta_learner(task: SegTask, m):
  d = m.ditta
  addon, proj = _modules(d)
  use_addon, distill, contrast, double = d.addon, d.distill, d.contrast, d.double_softmax

  def forward(variables, x_NHW4, *, train, key=None):
    """(logits, fused features, new batch_stats) of the segmentation model; in train mode
    with the decoder's BatchNorm on batch statistics, dropout and stochastic depth."""
    v = _seg_variables(variables)
    if train:
      (lo, fe), upd = task.apply(v, x_NHW4, method="segment_with_features", train=True,
                                       rngs={"dropout": key}, mutable=["batch_stats"])
      return lo, fe, upd.get("batch_stats", v.get("batch_stats"))
    lo, fe = task.apply(v, x_NHW4, method="segment_with_features")
    return lo, fe, v.get("batch_stats")

  def up(x, hw):
    return jax.image.resize(x, (x.shape[0], *hw, x.shape[-1]), "bilinear")

  def loss_fn(trainable, ctx, batch, key):
    x, xp = batch["frame"], batch["prev"]
    tgt, objs = batch["cls"].astype(jnp.int32), batch["obj"].astype(jnp.int32)
    has_prev = batch["has_prev"].astype(jnp.float32)
    hw = x.shape[1:3]
    b = x.shape[0]
    k_live, k_mom = jax.random.split(key)
    live_v = ctx.variables(trainable)
    # The clip (t, t-1) in one train-mode pass: BatchNorm statistics over both frames,
    # as the reference's 2-frame clip. (Frame 0 has no t-1: the frame is repeated,
    # which leaves the batch statistics those of the single frame.)
    clip = visible_input(normalise(jnp.concatenate([x, xp], 0)))
    lo2, fe2, stats = forward(live_v, clip, train=True, key=k_live)
    lo, lo_prev, fe = lo2[:b], lo2[b:], fe2[:b]
    fe_prev = fe2[b:]
    # The momentum model (the engine's EMA), in train mode on the same clip (the
    # reference's `momentum_model.train()`), with its own dropout and stochastic-depth draws.
    mom_v = ctx.variables(jax.tree.map(jax.lax.stop_gradient, ctx.ema))
    mlo2, mfe2, _ = forward(mom_v, clip, train=True, key=k_mom)
    mlo, mfe = jax.lax.stop_gradient(mlo2[:b]), jax.lax.stop_gradient(mfe2[:b])
    mprobs = obj.softmax(up(mlo, hw), -1)
    own = jnp.argmax(mprobs, -1)
    # Distillation: the cached class map already holds the ISS prediction wherever no
    # object covers a pixel (Eq. 5), so every pixel is supervised.
    target = tgt if distill else own
    plain_up = up(lo, hw)
    loss = jnp.zeros((), jnp.float32)
    if distill or use_addon:
      loss += obj.distill_loss(plain_up, target, double_softmax=double)
    if use_addon:
      # The value is frame t-1's live logits, gradient included (the reference's x[0, 0]).
      a_lo = addon.apply({"params": live_v["params"]["ditta_addon"]}, fe, fe_prev, lo_prev)
      per = jax.vmap(lambda l, t: obj.distill_loss(l[None], t[None], double_softmax=double))(
          up(a_lo, hw), target)
      loss += jnp.sum(per * has_prev) / b
    st = ctx.method_state
    protos, seen = st["protos"], st["seen"]
    if contrast:
      objects = objs if distill else own
      live = obj.l2n(up(obj.l2n(proj.apply({"params": live_v["params"]["ditta_proj"]}, fe)), hw))
      mf = obj.l2n(up(obj.l2n(proj.apply({"params": mom_v["params"]["ditta_proj"]}, mfe)), hw))
      rel = obj.prototype_reliability(mprobs, double_softmax=double)
      protos, seen = obj.update_prototypes(mf, rel, objects, protos, seen)
      protos = jax.lax.stop_gradient(protos)
      loss += obj.contrast_loss(live, objects, protos, d.temperature)
    new_stats = {**ctx.stats, "batch_stats": stats} if stats is not None else ctx.stats
    return loss, (new_stats, {"protos": protos, "seen": seen})

  def predict_carry_init(data):
    h, w = data["frame"].shape[0] // 4, data["frame"].shape[1] // 4
    return {"feat": jnp.zeros((h, w, task.cfg.decoder_hidden_size), jnp.float32),
            "logits": jnp.zeros((h, w, task.cfg.num_labels), jnp.float32),
            "has_prev": jnp.zeros((), bool)}

  def predict_fn(trainable, ctx, data, carry):
    v = ctx.variables(trainable)
    x = data["frame"][None]
    hw = x.shape[1:3]
    lo, fe, _ = forward(v, visible_input(normalise(x)), train=False)
    p = obj.softmax(up(lo, hw), -1)
    if use_addon:
      a_lo = addon.apply({"params": v["params"]["ditta_addon"]}, fe, carry["feat"][None], carry["logits"][None])
      p = jnp.where(carry["has_prev"], obj.fuse(p, obj.softmax(up(a_lo, hw), -1), d.tau), p)
    carry = {"feat": fe[0].astype(jnp.float32), "logits": lo[0].astype(jnp.float32),
             "has_prev": jnp.ones((), bool)}
    return jnp.argmax(p[0], -1).astype(jnp.int32), carry

  return Learner(loss_fn=loss_fn, predict_fn=predict_fn, optimizer=make_optimizer(m.optimizer),
                 predict_carry_init=predict_carry_init)


def iss_probs_fn(task: SegTask, variables):
  """Jitted `frames_NHW3 uint8 -> probabilities N, H, W, C` of the source (ISS) model."""
  @jax.jit
  def probs(frames):
    return obj.softmax(task.logits_full(variables, frames), -1)
  return lambda frames: np.concatenate([np.asarray(probs(frames[i:i + 8])) for i in range(0, len(frames), 8)])


def read_targets(m, video_id: str, frames_THW3, iss_digest: str) -> dict:
  """The video's cached masks; clear errors when missing or built for another video,
  teacher or ISS model (`iss_digest`, the weights digest of this run's source model)."""
  t = m.targets
  if not t.dir:
    raise ValueError(f"method {m.name!r} needs cached targets: set method.targets.dir (build them "
                     f"with `ttt-jax export` then `sam2-bridge targets`)")
  path = Path(t.dir) / f"{video_id}.npz"
  if not path.is_file():
    raise FileNotFoundError(f"no cached targets for video {video_id} at {path}; build them with "
                            f"`ttt-jax export CONFIG --out EXPORT` then `sam2-bridge targets "
                            f"--export-dir EXPORT --out-dir {t.dir}`")
  arrays, meta = cache_schema.read_cache(path, "masks", video_digest=cache_schema.video_digest(frames_THW3),
                                         teacher=t.teacher or None)
  want = "zero_shot" if m.kind == "zero_shot" else "ditta"
  if meta["params"].get("mode") != want:
    raise cache_schema.CacheMismatch(f"{path} holds {meta['params'].get('mode')!r} targets, method "
                                     f"{m.name!r} needs {want!r} ones")
  built = meta["params"].get("iss_digest")  # None: built from probabilities of unknown origin
  if built is not None and built != iss_digest:
    raise cache_schema.CacheMismatch(
        f"{path} was prompted from another ISS model's probabilities (weights sha256 {built[:12]}..., "
        f"this run's model {iss_digest[:12]}...); rebuild it with `ttt-jax export` then "
        f"`sam2-bridge targets`")
  return arrays


class DiTTA:
  """DiTTA (`Method`): SAM2-distilled warm-up, temporal add-on, mask contrast, then frozen."""

  def build(self, config, model: SourceModel) -> Plan:
    m = config.method
    task = SegTask(model.cfg)
    iss_digest = variables_digest(model.variables)
    variables = add_ditta_params(model.variables, task, m.ditta, jax.random.key(config.model.init_seed))
    trainable, stats, frozen = split_variables(variables, tuple(m.trainable))
    if not trainable:
      raise ValueError(f"method.trainable {tuple(m.trainable)} matches no parameter")
    k = max(m.ditta.max_objects, task.cfg.num_labels)
    method_state = {"protos": jnp.zeros((k, m.ditta.dim), jnp.float32), "seen": jnp.zeros((k,), bool)}
    iss = iss_probs_fn(task, model.variables)
    check = frame_ticks(task)

    def make_ticks(video_id, frames_THW3):
      frames = check(video_id, frames_THW3)
      if not m.ditta.distill:
        return pair_ticks(frames)
      w = warmup_frames(len(frames), m.warmup_fraction)
      masks = read_targets(m, video_id, frames, iss_digest)["masks"]
      if masks.shape[0] != w:
        raise ValueError(f"cached targets of {video_id} cover {masks.shape[0]} frames, the warm-up "
                         f"is {w} frames (method.warmup_fraction={m.warmup_fraction}); rebuild them")
      probs = iss(frames[:w])
      cls_map, obj_map, _ = ditta_targets.distillation_targets(masks, probs)
      # Eq. 5 as the reference builds it (`distill_label = iss_pred; [keep] = label`):
      # the frozen ISS prediction wherever no object (of non-zero score) gives a class.
      cls_map = ditta_targets.fill_with_iss(cls_map, probs)
      return pair_ticks(frames, cls_map, obj_map)

    cfg = step_config(config)
    return Plan(learner=_ditta_learner(task, m), step_config=cfg,
                variables=Variables(trainable=trainable, stats=stats, frozen=frozen, method_state=method_state),
                hparams=runtime_hparams(config, cfg), schedule=schedule_fn(m), make_ticks=make_ticks,
                first_scored=first_scored_fn(m), program_key=program_key(config, model.cfg, cfg))


# ---------------------------------------------------------------------------
# CoTTA (Wang et al. 2022): EMA teacher, augmentation-averaged pseudo-labels,
# stochastic restore; all parameters adapt online on every frame.
# ---------------------------------------------------------------------------


def _cotta_learner(task: SegTask, m):
  c = m.cotta
  scales = tuple(c.scales)

  def logits_at(variables, x_NHW3, scale, flip):
    n, h, w, _ = x_NHW3.shape
    y = x_NHW3[:, :, ::-1] if flip else x_NHW3
    if scale != 1.0:
      y = jax.image.resize(y, (n, int(h * scale), int(w * scale), 3), "bilinear")
    lo = task.apply(variables, visible_input(y), method="segment")
    lo = jax.image.resize(lo, (n, h, w, lo.shape[-1]), "bilinear")
    return lo[:, :, ::-1] if flip else lo

  def loss_fn(trainable, ctx, batch_BHW3, key):
    x = normalise(batch_BHW3)
    teacher = ctx.variables(jax.tree.map(jax.lax.stop_gradient, ctx.ema))
    source = ctx.variables(ctx.anchor)
    p_teacher = obj.softmax(logits_at(teacher, x, 1.0, False), -1)
    p_aug = jnp.mean(jnp.stack([obj.softmax(logits_at(teacher, x, s, f), -1)
                                for s in scales for f in (False, True)]), 0)
    conf = jnp.mean(jnp.max(obj.softmax(logits_at(source, x, 1.0, False), -1), -1))
    pseudo = jnp.argmax(jnp.where(conf < c.threshold, p_aug, p_teacher), -1)
    lo = logits_at(ctx.variables(trainable), x, 1.0, False)
    return obj.distill_loss(lo, pseudo, double_softmax=False), (ctx.stats, ctx.method_state)

  def post_update_fn(trainable, ctx, key):
    # CoTTA's order: optimizer step, teacher EMA of the updated student (the engine's,
    # already taken), then stochastic restore of the student towards the source.
    leaves, tdef = jax.tree.flatten(trainable)
    keys = jax.random.split(key, len(leaves))
    anc = jax.tree.leaves(ctx.anchor)
    out = [jnp.where(jax.random.bernoulli(k, c.restore, x.shape), a, x)
           for k, x, a in zip(keys, leaves, anc)]
    return jax.tree.unflatten(tdef, out)

  def predict_fn(trainable, ctx, frame_HW3):
    lo = logits_at(ctx.variables(ctx.ema), normalise(frame_HW3[None]), 1.0, False)
    return jnp.argmax(lo[0], -1).astype(jnp.int32)

  return Learner(loss_fn=loss_fn, predict_fn=predict_fn, optimizer=make_optimizer(m.optimizer),
                 post_update_fn=post_update_fn)


class CoTTA:
  """CoTTA (`Method`), online on every frame under DiTTA's scoring protocol."""

  def build(self, config, model: SourceModel) -> Plan:
    m = config.method
    if m.ema_decay <= 0:
      raise ValueError("CoTTA's teacher is the EMA of the student: set method.ema_decay > 0")
    task = SegTask(model.cfg)
    trainable, stats, frozen = split_variables(model.variables, tuple(m.trainable))
    cfg = step_config(config)
    return Plan(learner=_cotta_learner(task, m), step_config=cfg,
                variables=Variables(trainable=trainable, stats=stats, frozen=frozen),
                hparams=runtime_hparams(config, cfg), schedule=schedule_fn(m),
                make_ticks=frame_ticks(task), first_scored=first_scored_fn(m),
                program_key=program_key(config, model.cfg, cfg))


# ---------------------------------------------------------------------------
# Zero-shot refinement: propagated first-frame prompts painted over the ISS output
# ---------------------------------------------------------------------------


class ZeroShot:
  """Zero-shot refinement (`Method`): predict-only; the ISS output with the propagated
  first-frame objects painted over it."""

  def build(self, config, model: SourceModel) -> Plan:
    m = config.method
    task = SegTask(model.cfg)
    iss_digest = variables_digest(model.variables)
    check = frame_ticks(task)

    def predict_fn(trainable, ctx, data):
      iss = task.predict_labels(ctx.variables(trainable), data["frame"])
      painted = data["painted"].astype(jnp.int32)
      return jnp.where(painted != IGNORE, painted, iss)

    def make_ticks(video_id, frames_THW3):
      frames = check(video_id, frames_THW3)
      a = read_targets(m, video_id, frames, iss_digest)
      if a["masks"].shape[0] != len(frames):
        raise ValueError(f"zero-shot targets of {video_id} cover {a['masks'].shape[0]} frames, the "
                         f"video has {len(frames)}")
      painted = ditta_targets.zero_shot_paint(a["masks"], a["prompt_classes"], a["prompt_scores"])
      return {"frame": frames, "painted": painted.astype(np.uint8)}

    trainable, stats, frozen = split_variables(model.variables, ())
    cfg = step_config(config)
    learner = Learner(loss_fn=None, predict_fn=predict_fn, optimizer=make_optimizer(m.optimizer))
    return Plan(learner=learner, step_config=cfg,
                variables=Variables(trainable=trainable, stats=stats, frozen=frozen),
                hparams=runtime_hparams(config, cfg), schedule=schedule_fn(m), make_ticks=make_ticks,
                first_scored=first_scored_fn(m), program_key=program_key(config, model.cfg, cfg))
