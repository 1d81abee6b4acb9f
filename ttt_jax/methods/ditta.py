"""DiTTA, and its baselines CoTTA and zero-shot refinement, as engine configurations.

DiTTA (METHODS.md): a fresh copy of the image model per video plus a momentum copy
(EMA 0.99); the decode head, a temporal fusion add-on and a projection head are
trained with AdamW (lr 1e-3, wd 0.01) for `warmup_passes` = 5 passes over the
warm-up frames, one step per frame on the pair (t-1, t), in train mode (decoder
BatchNorm on batch statistics, dropout); then the model is frozen and predicts
every frame, fusing plain and add-on probabilities where the plain prediction is
unreliable. Loss = CE(plain) + CE(add-on) + mask contrast, each term switched by
`method.ditta_addon / ditta_distill / ditta_contrast`; without distillation the
targets (and the contrast's objects) are the momentum model's own predictions.

Ticks carry packed uint8 frames: channels [RGB_t, RGB_{t-1}, target class,
target object, has-previous] (`pack_frames`); prediction uses RGB_t only.

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
import optax

from sam2_bridge import cache_schema
from ttt_jax.checkpoint.model_io import variables_digest
from ttt_jax.engine.schedule import warmup_frames
from ttt_jax.engine.state import merge_params, split_params
from ttt_jax.engine.step import Learner, StepConfig
from ttt_jax.methods import ditta_targets
from ttt_jax.methods.segformer_task import SegTask, normalise
from ttt_jax.models.temporal_addon import ProjectionHead, TemporalAddon
from ttt_jax.objectives import ditta as obj
from ttt_jax.objectives.reconstruction import visible_input

OBJECTIVES = ("ditta", "cotta", "zero_shot")
IGNORE = obj.IGNORE


# ---------------------------------------------------------------------------
# Packed frames
# ---------------------------------------------------------------------------


def pack_frames(frames_THW3, cls_THW=None, obj_THW=None):
  """uint8 `T, H, W, 9`: RGB_t, RGB_{t-1}, class target, object target, has-previous."""
  t, h, w, _ = frames_THW3.shape
  prev = np.concatenate([frames_THW3[:1], frames_THW3[:-1]])
  cls_p = np.full((t, h, w), IGNORE, np.uint8)
  obj_p = np.full((t, h, w), IGNORE, np.uint8)
  if cls_THW is not None:  # targets cover the warm-up frames only
    cls_p[:len(cls_THW)] = cls_THW
    obj_p[:len(obj_THW)] = obj_THW
  has_prev = np.ones((t, h, w), np.uint8)
  has_prev[0] = 0
  return np.concatenate([frames_THW3, prev, cls_p[..., None], obj_p[..., None], has_prev[..., None]], -1)


# ---------------------------------------------------------------------------
# Variables
# ---------------------------------------------------------------------------


def _modules(task: SegTask, m):
  return TemporalAddon(dim=m.ditta_dim, radius=m.ditta_radius), ProjectionHead(dim=m.ditta_dim)


def add_ditta_params(variables, task: SegTask, m, key):
  """The source model's variables plus randomly initialised add-on and projection head."""
  addon, proj = _modules(task, m)
  d, c = task.cfg.decoder_hidden_size, task.cfg.num_labels
  k1, k2 = jax.random.split(key)
  f = jnp.zeros((1, 4, 4, d))
  params = dict(variables["params"])
  params["ditta_addon"] = addon.init(k1, f, f, jnp.zeros((1, 4, 4, c)))["params"]
  params["ditta_proj"] = proj.init(k2, f)["params"]
  return {**variables, "params": params}


# Method state kept among the frozen variables, never passed to the model.
_METHOD_STATE = ("momentum", "source", "ditta_state")


def _model_variables(frozen):
  """The frozen variables the segmentation model reads (BatchNorm statistics, frozen params)."""
  return {k: v for k, v in frozen.items() if k not in _METHOD_STATE}


def _seg_params(params):
  return {k: v for k, v in params.items() if not k.startswith("ditta_")}


# ---------------------------------------------------------------------------
# DiTTA
# ---------------------------------------------------------------------------


def _momentum_update(momentum: float):
  """`post_update_fn` keeping `frozen['momentum']` an EMA of the trained parameters,
  taken after each optimizer step (the reference's `_update_momentum` follows
  `optimizer.step()`)."""
  def post(trainable, frozen, anchor, key):
    mom = optax.incremental_update(trainable, frozen["momentum"], 1.0 - momentum)
    return trainable, {**frozen, "momentum": mom}
  return post


def _ditta_learner(task: SegTask, m):
  addon, proj = _modules(task, m)
  use_addon, distill, contrast = m.ditta_addon, m.ditta_distill, m.ditta_contrast
  double = m.ditta_double_softmax

  def forward(params, rest, x_NHW4, *, train, key=None):
    """(logits, fused features, new batch_stats) of the segmentation model; in train mode
    with the decoder's BatchNorm on batch statistics, dropout and stochastic depth."""
    v = {**rest, "params": _seg_params(params)}
    if train:
      (lo, fe), upd = task.model.apply(v, x_NHW4, method="segment_with_features", train=True,
                                       rngs={"dropout": key}, mutable=["batch_stats"])
      return lo, fe, upd.get("batch_stats", rest.get("batch_stats"))
    lo, fe = task.model.apply(v, x_NHW4, method="segment_with_features")
    return lo, fe, rest.get("batch_stats")

  def up(x, hw):
    return jax.image.resize(x, (x.shape[0], *hw, x.shape[-1]), "bilinear")

  def loss_fn(trainable, frozen, batch_BHWC, key):
    x, xp = batch_BHWC[..., :3], batch_BHWC[..., 3:6]
    tgt, objs = batch_BHWC[..., 6].astype(jnp.int32), batch_BHWC[..., 7].astype(jnp.int32)
    has_prev = (batch_BHWC[:, 0, 0, 8] > 0).astype(jnp.float32)
    hw = x.shape[1:3]
    b = x.shape[0]
    k_live, k_mom = jax.random.split(key)
    rest = _model_variables(frozen)
    params = merge_params(trainable, frozen)["params"]
    # The clip (t, t-1) in one train-mode pass: BatchNorm statistics over both frames,
    # as the reference's 2-frame clip. (Frame 0 has no t-1: the frame is repeated,
    # which leaves the batch statistics those of the single frame.)
    clip = visible_input(normalise(jnp.concatenate([x, xp], 0)))
    lo2, fe2, stats = forward(params, rest, clip, train=True, key=k_live)
    lo, lo_prev, fe, fe_prev = lo2[:b], lo2[b:], fe2[:b], fe2[b:]
    # The momentum model, in train mode on the same clip (the reference's
    # `momentum_model.train()`), with its own dropout and stochastic-depth draws.
    mom = jax.tree.map(jax.lax.stop_gradient, frozen["momentum"])
    mom_params = merge_params(mom, frozen)["params"]
    mlo2, mfe2, _ = forward(mom_params, rest, clip, train=True, key=k_mom)
    mlo, mfe = jax.lax.stop_gradient(mlo2[:b]), jax.lax.stop_gradient(mfe2[:b])
    mprobs = jax.nn.softmax(up(mlo, hw), -1)
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
      a_lo = addon.apply({"params": params["ditta_addon"]}, fe, fe_prev, lo_prev)
      per = jax.vmap(lambda l, t: obj.distill_loss(l[None], t[None], double_softmax=double))(
          up(a_lo, hw), target)
      loss += jnp.sum(per * has_prev) / b
    st = frozen["ditta_state"]
    protos, seen = st["protos"], st["seen"]
    if contrast:
      objects = objs if distill else own
      live = obj.l2n(up(obj.l2n(proj.apply({"params": params["ditta_proj"]}, fe)), hw))
      mf = obj.l2n(up(obj.l2n(proj.apply({"params": mom_params["ditta_proj"]}, mfe)), hw))
      rel = obj.prototype_reliability(mprobs, double_softmax=double)
      protos, seen = obj.update_prototypes(mf, rel, objects, protos, seen)
      protos = jax.lax.stop_gradient(protos)
      loss += obj.contrast_loss(live, objects, protos, m.ditta_temperature)
    new_frozen = {**frozen, "ditta_state": {"protos": protos, "seen": seen}}
    if stats is not None:
      new_frozen["batch_stats"] = stats
    return loss, new_frozen

  def predict_carry_init(frame_HWC):
    h, w = frame_HWC.shape[0] // 4, frame_HWC.shape[1] // 4
    return {"feat": jnp.zeros((h, w, task.cfg.decoder_hidden_size), jnp.float32),
            "logits": jnp.zeros((h, w, task.cfg.num_labels), jnp.float32),
            "has_prev": jnp.zeros((), bool)}

  def predict_fn(trainable, frozen, frame_HWC, carry):
    rest = _model_variables(frozen)
    params = merge_params(trainable, frozen)["params"]
    x = frame_HWC[None, ..., :3]
    hw = x.shape[1:3]
    lo, fe, _ = forward(params, rest, visible_input(normalise(x)), train=False)
    p = jax.nn.softmax(up(lo, hw), -1)
    if use_addon:
      a_lo = addon.apply({"params": params["ditta_addon"]}, fe, carry["feat"][None], carry["logits"][None])
      p = jnp.where(carry["has_prev"], obj.fuse(p, jax.nn.softmax(up(a_lo, hw), -1), m.ditta_tau), p)
    carry = {"feat": fe[0].astype(jnp.float32), "logits": lo[0].astype(jnp.float32),
             "has_prev": jnp.ones((), bool)}
    return jnp.argmax(p[0], -1).astype(jnp.int32), carry

  opt = optax.adamw(m.lr, b1=m.b1, b2=m.b2, weight_decay=m.weight_decay)
  if m.clip_norm > 0:
    opt = optax.chain(optax.clip_by_global_norm(m.clip_norm), opt)
  return Learner(loss_fn=loss_fn, predict_fn=predict_fn, optimizer=opt,
                 predict_carry_init=predict_carry_init, post_update_fn=_momentum_update(m.ditta_momentum))


# ---------------------------------------------------------------------------
# CoTTA (Wang et al. 2022): EMA teacher, augmentation-averaged pseudo-labels,
# stochastic restore; all parameters adapt online on every frame.
# ---------------------------------------------------------------------------


def _cotta_learner(task: SegTask, m):
  scales = tuple(m.cotta_scales)

  def logits_at(variables, x_NHW3, scale, flip):
    n, h, w, _ = x_NHW3.shape
    y = x_NHW3[:, :, ::-1] if flip else x_NHW3
    if scale != 1.0:
      y = jax.image.resize(y, (n, int(h * scale), int(w * scale), 3), "bilinear")
    lo = task.model.apply(variables, visible_input(y), method="segment")
    lo = jax.image.resize(lo, (n, h, w, lo.shape[-1]), "bilinear")
    return lo[:, :, ::-1] if flip else lo

  def loss_fn(trainable, frozen, batch_BHWC, key):
    x = normalise(batch_BHWC[..., :3])
    rest = _model_variables(frozen)
    teacher = merge_params(jax.tree.map(jax.lax.stop_gradient, frozen["momentum"]), rest)
    source = merge_params(frozen["source"], rest)
    p_teacher = jax.nn.softmax(logits_at(teacher, x, 1.0, False), -1)
    p_aug = jnp.mean(jnp.stack([jax.nn.softmax(logits_at(teacher, x, s, f), -1)
                                for s in scales for f in (False, True)]), 0)
    conf = jnp.mean(jnp.max(jax.nn.softmax(logits_at(source, x, 1.0, False), -1), -1))
    pseudo = jnp.argmax(jnp.where(conf < m.cotta_threshold, p_aug, p_teacher), -1)
    student = merge_params(trainable, rest)
    lo = logits_at(student, x, 1.0, False)
    return obj.distill_loss(lo, pseudo, double_softmax=False), frozen

  ema = _momentum_update(m.cotta_momentum)

  def post_update_fn(trainable, frozen, anchor, key):
    # CoTTA's order: optimizer step, teacher EMA of the updated student, stochastic restore.
    _, frozen = ema(trainable, frozen, anchor, key)
    leaves, tdef = jax.tree.flatten(trainable)
    keys = jax.random.split(key, len(leaves))
    anc = jax.tree.leaves(anchor)
    out = [jnp.where(jax.random.bernoulli(k, m.cotta_restore, x.shape), a, x)
           for k, x, a in zip(keys, leaves, anc)]
    return jax.tree.unflatten(tdef, out), frozen

  def predict_fn(trainable, frozen, frame_HWC):
    rest = _model_variables(frozen)
    teacher = merge_params(frozen["momentum"], rest)
    lo = logits_at(teacher, normalise(frame_HWC[None, ..., :3]), 1.0, False)
    return jnp.argmax(lo[0], -1).astype(jnp.int32)

  opt = optax.adamw(m.lr, b1=m.b1, b2=m.b2, weight_decay=m.weight_decay)
  if m.clip_norm > 0:
    opt = optax.chain(optax.clip_by_global_norm(m.clip_norm), opt)
  return Learner(loss_fn=loss_fn, predict_fn=predict_fn, optimizer=opt, post_update_fn=post_update_fn)


# ---------------------------------------------------------------------------
# Zero-shot refinement: propagated first-frame prompts painted over the ISS output
# ---------------------------------------------------------------------------


def _zero_shot_learner(task: SegTask):
  def predict_fn(trainable, frozen, frame_HWC):
    iss = task.predict_labels(trainable, frozen, frame_HWC[..., :3])
    painted = frame_HWC[..., 3].astype(jnp.int32)
    return jnp.where(painted != IGNORE, painted, iss)

  return Learner(loss_fn=lambda tr, fr, b, k: (jnp.zeros(()), fr), predict_fn=predict_fn,
                 optimizer=optax.identity())


# ---------------------------------------------------------------------------
# Build: learner, step config, variables and per-video preparation
# ---------------------------------------------------------------------------


def iss_probs_fn(task: SegTask, variables):
  """Jitted `frames_NHW3 uint8 -> probabilities N, H, W, C` of the source (ISS) model."""
  tr, fr = split_params(variables, lambda p: False)

  @jax.jit
  def probs(frames):
    return jax.nn.softmax(task.logits_full(tr, fr, frames), -1)
  return lambda frames: np.concatenate([np.asarray(probs(frames[i:i + 8])) for i in range(0, len(frames), 8)])


def read_targets(m, video_id: str, frames_THW3, iss_digest: str) -> dict:
  """The video's cached masks; clear errors when missing or built for another video,
  teacher or ISS model (`iss_digest`, the weights digest of this run's source model)."""
  if not m.targets_dir:
    raise ValueError(f"method {m.name!r} needs cached targets: set method.targets_dir (build them "
                     f"with `ttt-jax export` then `sam2-bridge targets`)")
  path = Path(m.targets_dir) / f"{video_id}.npz"
  if not path.is_file():
    raise FileNotFoundError(f"no cached targets for video {video_id} at {path}; build them with "
                            f"`ttt-jax export CONFIG --out EXPORT` then `sam2-bridge targets "
                            f"--export-dir EXPORT --out-dir {m.targets_dir}`")
  arrays, meta = cache_schema.read_cache(path, "masks", video_digest=cache_schema.video_digest(frames_THW3),
                                         teacher=m.targets_teacher or None)
  want = "zero_shot" if m.objective == "zero_shot" else "ditta"
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


def build(task: SegTask, m, variables, *, seed: int = 0):
  """`(learner, step_config, schedule kwargs, trainable, frozen, prepare)` of a method;
  `prepare(frames_THW3, video_id) -> frames for the ticks`."""
  iss_digest = variables_digest(variables) if m.objective in ("ditta", "zero_shot") else None
  if m.objective == "ditta":
    variables = add_ditta_params(variables, task, m, jax.random.key(seed))
    pred = lambda p: p[0] == "params" and p[1] in ("decode_head", "ditta_addon", "ditta_proj")
    trainable, frozen = split_params(variables, pred)
    k = max(m.ditta_max_objects, task.cfg.num_labels)
    frozen = {**frozen, "momentum": jax.tree.map(jnp.copy, trainable),
              "ditta_state": {"protos": jnp.zeros((k, m.ditta_dim), jnp.float32),
                              "seen": jnp.zeros((k,), bool)}}
    learner = _ditta_learner(task, m)
    # mode 'none' (frozen inference only) compiles no update branch at all.
    step_cfg = StepConfig(carry_params=True, window=1, batch_size=1, reset_opt_state=False,
                          steps_per_frame=m.steps_per_frame if m.mode != "none" else 0)
    sched = dict(warmup_fraction=m.warmup_fraction, warmup_passes=m.warmup_passes)
    iss = iss_probs_fn(task, variables)

    def prepare(frames, video_id):
      w = warmup_frames(len(frames), m.warmup_fraction)
      if not m.ditta_distill:
        return pack_frames(frames)
      arrays = read_targets(m, video_id, frames, iss_digest)
      masks = arrays["masks"]
      if masks.shape[0] != w:
        raise ValueError(f"cached targets of {video_id} cover {masks.shape[0]} frames, the warm-up "
                         f"is {w} frames (method.warmup_fraction={m.warmup_fraction}); rebuild them")
      probs = iss(frames[:w])
      cls_map, obj_map, _ = ditta_targets.distillation_targets(masks, probs)
      # Eq. 5 as the reference builds it (`distill_label = iss_pred; [keep] = label`):
      # the frozen ISS prediction wherever no object (of non-zero score) gives a class.
      cls_map = ditta_targets.fill_with_iss(cls_map, probs)
      return pack_frames(frames, cls_map, obj_map)
    return learner, step_cfg, sched, trainable, frozen, prepare

  if m.objective == "cotta":
    trainable, frozen = split_params(variables, lambda p: p[0] == "params")
    frozen = {**frozen, "momentum": jax.tree.map(jnp.copy, trainable),
              "source": jax.tree.map(jnp.copy, trainable)}
    step_cfg = StepConfig(carry_params=True, window=1, steps_per_frame=m.steps_per_frame, batch_size=1,
                          reset_opt_state=False)
    return (_cotta_learner(task, m), step_cfg, {}, trainable, frozen, lambda frames, vid: frames)

  if m.objective == "zero_shot":
    trainable, frozen = split_params(variables, lambda p: False)

    def prepare(frames, video_id):
      a = read_targets(m, video_id, frames, iss_digest)
      if a["masks"].shape[0] != len(frames):
        raise ValueError(f"zero-shot targets of {video_id} cover {a['masks'].shape[0]} frames, the "
                         f"video has {len(frames)}")
      painted = ditta_targets.zero_shot_paint(a["masks"], a["prompt_classes"], a["prompt_scores"])
      return np.concatenate([frames, painted[..., None]], -1)
    step_cfg = StepConfig(steps_per_frame=0)
    return _zero_shot_learner(task), step_cfg, {}, trainable, frozen, prepare
  raise ValueError(f"unknown objective {m.objective!r}; expected one of {OBJECTIVES}")
