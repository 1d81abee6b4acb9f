"""Joint training of the Y-SegFormer on labelled source stills: main + reconstruction.

As the video-TTT paper does before test time: loss = CE(main head on the
unmasked image) + recon_weight * MSE(reconstruction head on the masked image).
Each head runs in train mode on its own input, so a BatchNorm head keeps the
statistics of what it sees at test time (the reconstruction head: masked images).

Two optional first phases (at most one):
- `main_steps` of the main task alone, as the reference's joint model starts from
  a main-task-trained Mask2Former (the reconstruction head waits, lr 0); the joint
  phase after it trains the encoder at `encoder_lr_mult` x the heads' lr;
- `mae_steps` of reconstruction alone (an MAE-pretrained encoder), after which the
  encoder learns at `encoder_lr_mult` x the heads' lr (0 freezes it: the heads are
  trained on fixed MAE features, as image-level TTT-MAE trains its "probing" models).
Optionally with SegFormer's colour jitter (`photometric`). The model's head
normalisation (`model.head_norm`) and stochastic depth (`model.drop_path_rate`)
come from the config.
Checkpoints with an orbax CheckpointManager every `save_every` steps; a rerun
with the same `--out` resumes from the latest one. The final model is written to
`OUT/model` (see `checkpoint.model_io`).

On several devices (`data_parallel`: 0 = one device, -1 = all, N = the first N)
each batch is split over a 1-D mesh ('data') and the state replicated; XLA
partitions the same jitted step and sums the gradients across devices. Random
draws do not depend on the split (partitionable threefry), so the run matches
the one-device run to float round-off. `model.compute_dtype=bfloat16` computes
the model in bfloat16 with float32 parameters and optimizer state.

  ttt-jax pretrain configs/pretrain_synthetic.py --out /tmp/pretrain
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ttt_jax.checkpoint.model_io import init_variables, save_model
from ttt_jax.data import synthetic
from ttt_jax.methods.augment import photometric_distortion, random_resized_crop
from ttt_jax.models.segformer import YSegFormer, segformer_config
from ttt_jax.models.inputs import normalise, visible_input
from ttt_jax.models.precision import apply_in
from ttt_jax.objectives.reconstruction import reconstruction_loss
from ttt_jax.train.loop import TrainState, train_loop


def _augment_pair(key, img_BHW3, lab_BHW, min_scale, num_classes):
  """The same random crop/flip for images (bilinear) and labels (nearest)."""
  # Labels are warped as one-hot maps and re-argmaxed, so they stay class ids.
  img = random_resized_crop(key, img_BHW3, min_scale=min_scale, flip=True)
  onehot = jax.nn.one_hot(lab_BHW, num_classes, dtype=jnp.float32)
  lab = random_resized_crop(key, onehot, min_scale=min_scale, flip=True).argmax(-1)
  return img, lab


def make_train_step(model: YSegFormer, tx, c):

  def loss_fn(params, batch_stats, imgs_u8, labs, key, step):
    k_aug, k_mask, k_drop = jax.random.split(key, 3)
    if c.photometric:  # its own key: without it, the batches are the shipped model's
      imgs_u8 = photometric_distortion(jax.random.fold_in(key, 3), imgs_u8)
    img, lab = _augment_pair(k_aug, normalise(imgs_u8), labs, c.crop_min_scale,
                              model.config.num_labels)
    v = {"params": params, "batch_stats": batch_stats}
    k_d1, k_d2 = jax.random.split(k_drop)
    apply = functools.partial(apply_in, model.config.compute_dtype, model.apply)
    logits, upd = apply(v, visible_input(img), method="segment", train=True,
                        rngs={"dropout": k_d1}, mutable=["batch_stats"])
    b, h, w, _ = img.shape
    logits = jax.image.resize(logits, (b, h, w, logits.shape[-1]), "bilinear")
    valid = (lab != synthetic.IGNORE)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, lab, 0))
    ce = jnp.sum(ce * valid) / jnp.maximum(valid.sum(), 1)
    # The reconstruction head in train mode on the masked input: its BatchNorm (if any)
    # normalises, and keeps running statistics of, masked images, as it meets them at
    # test time. (Statistics from a pass on the unmasked image sat 1.4 to 2.3 sigma off.)
    rec, upd_r = reconstruction_loss(
        lambda x: apply(v, x, method="reconstruct", train=True, rngs={"dropout": k_d2},
                        mutable=["batch_stats"]),
        img, k_mask, patch=c.patch, ratio=c.mask_ratio, has_aux=True)
    ce_weight = (step >= c.mae_steps).astype(jnp.float32)  # 0 during the MAE-only phase
    rec_weight = c.recon_weight * (step >= c.main_steps).astype(jnp.float32)  # 0 while main-only
    # Each pass updates its own head's statistics only (none for GroupNorm/LayerNorm heads).
    stats = {**batch_stats, **upd.get("batch_stats", {}), **upd_r.get("batch_stats", {})}
    return ce_weight * ce + rec_weight * rec, (stats, ce, rec)

  @functools.partial(jax.jit, donate_argnums=0)  # the old state's buffers hold the new one
  def step(state: TrainState, imgs, labs, key):
    (loss, (bs, ce, rec)), g = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats, imgs, labs, key, state.step)
    upd, opt_state = tx.update(g, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, upd), bs, opt_state, state.step + 1), \
        dict(loss=loss, ce=ce, rec=rec)
  return step


def _phase_schedule(lr, steps, warmup):
  return optax.warmup_cosine_decay_schedule(0.0, lr, min(warmup, max(steps // 10, 1)), max(steps, 1),
                                            lr * 0.01)


def make_optimizer(c) -> optax.GradientTransformation:
  """Global-norm clip 1, then AdamW with warm-up + cosine decay per phase.

  Phase 1 (`mae_steps`, reconstruction only) trains the encoder and the
  reconstruction head; the main head waits (lr 0, so no weight decay either).
  Or phase 1 (`main_steps`, main task only) trains the encoder and the main head;
  the reconstruction head waits.
  Phase 2 (joint) trains the heads at `lr` and the encoder at `encoder_lr_mult`
  x `lr`. Without phase 1 and with the multiplier at 0, the encoder gets no
  optimizer state at all.
  """
  if c.mae_steps and c.main_steps:
    raise ValueError(f"pretraining takes at most one first phase: mae_steps={c.mae_steps} and "
                     f"main_steps={c.main_steps} are both set")
  n1, mult = c.mae_steps + c.main_steps, c.encoder_lr_mult
  if n1 >= c.steps:
    raise ValueError(f"the first phase ({n1} steps) leaves no joint phase in steps={c.steps}")
  joint = _phase_schedule(c.lr, c.steps - n1, c.warmup_steps)
  scaled = lambda s: mult * joint(s)
  if n1 == 0:
    scheds = {"encoder": scaled, "recon": joint, "decode_head": joint}
  elif c.main_steps:
    main = _phase_schedule(c.lr, n1, c.warmup_steps)
    scheds = {"encoder": optax.join_schedules([main, scaled], [n1]),
              "decode_head": optax.join_schedules([main, joint], [n1]),
              "recon": optax.join_schedules([optax.constant_schedule(0.0), joint], [n1])}
  else:
    mae = _phase_schedule(c.lr, n1, c.warmup_steps)
    scheds = {"encoder": optax.join_schedules([mae, scaled], [n1]),
              "recon": optax.join_schedules([mae, joint], [n1]),
              "decode_head": optax.join_schedules([optax.constant_schedule(0.0), joint], [n1])}
  txs = {k: optax.adamw(v, weight_decay=c.weight_decay) for k, v in scheds.items()}
  if n1 == 0 and mult == 0:
    txs["encoder"] = optax.set_to_zero()
  labels = lambda params: {k: jax.tree.map(lambda _: k, v) for k, v in params.items()}
  return optax.chain(optax.clip_by_global_norm(1.0), optax.partition(txs, labels))


def model_config(c):
  """The SegFormer config a pretraining config trains (architecture and compute options)."""
  return segformer_config(c.model.size, c.data.num_classes, head_norm=c.model.get("head_norm", "batch"),
                          drop_path_rate=c.model.get("drop_path_rate", 0.0)).with_compute_options(c.model)


def initial_state(c, mcfg, tx) -> TrainState:
  """Step 0: parameters from `c.seed`, their optimizer state under `tx`."""
  v = init_variables(mcfg, jax.random.key(c.seed), (c.data.height, c.data.width))
  # A model whose heads keep no running statistics (head_norm 'group'/'layer') has none.
  return TrainState(v["params"], v.get("batch_stats", {}), tx.init(v["params"]), jnp.zeros((), jnp.int32))


def pretrain(config, out_dir, *, progress: bool = True, stop_at: int | None = None) -> Path | None:
  """Trains per `config` (see configs/pretrain_synthetic.py); returns the model dir.

  `stop_at` ends the run after that step with its checkpoint saved (as if it were
  interrupted) and returns None; a later call resumes it.
  """
  c = config
  out = Path(out_dir).absolute()
  out.mkdir(parents=True, exist_ok=True)
  mcfg = model_config(c)
  mesh = data_mesh(c.get("data_parallel", 0), c.batch_size)
  model = YSegFormer(mcfg)
  imgs, labs = synthetic.make_stills(c.data.seed, c.data.num_images, c.data.height, c.data.width)
  tx = make_optimizer(c)
  state = initial_state(c, mcfg, tx)

  def batch(s):
    # Batches depend only on (seed, step), so a resumed run sees the same ones.
    idx = np.random.default_rng([c.seed, s]).integers(0, len(imgs), c.batch_size)
    return imgs[idx], labs[idx]

  step = make_train_step(model, tx, c)
  if mesh is not None:
    step = sharded_step(step, mesh)
  state, log, secs = train_loop(state, step, batch, steps=c.steps,
                                ckpt_dir=out / "checkpoints", seed=c.seed, save_every=c.save_every,
                                log_every=c.log_every, desc="pretrain", progress=progress, stop_at=stop_at)
  if int(state.step) < c.steps:
    return None
  meta = {"trained_by": "ttt-jax pretrain", "config": json.loads(c.to_json()),
          "seconds": secs, "log": log[-5:]}
  variables = {"params": state.params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  # Compute dtype, remat and scanned stages are the run's choices, not the architecture's.
  return save_model(out / "model", variables, mcfg.architecture(), meta)


def data_mesh(data_parallel: int, batch_size: int) -> Mesh | None:
  """The 1-D 'data' mesh of `data_parallel` devices (0: none, -1: all local ones)."""
  if data_parallel == 0:
    return None
  devices = jax.local_devices()
  n = len(devices) if data_parallel < 0 else data_parallel
  if not 1 <= n <= len(devices):
    raise ValueError(f"data_parallel={data_parallel} asks for {n} devices; {len(devices)} are here")
  if batch_size % n:
    raise ValueError(f"batch_size={batch_size} does not split over data_parallel={n} devices")
  return Mesh(np.array(devices[:n]), ("data",))


def sharded_step(step, mesh: Mesh):
  """`step` with the batch split over `mesh` and the state replicated on it."""
  rows, whole = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())

  def run(state, imgs, labs, key):
    return step(jax.device_put(state, whole), jax.device_put(imgs, rows), jax.device_put(labs, rows), key)
  return run
