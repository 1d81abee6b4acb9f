"""CAST's objective and its jitted training step (one for every stage).

    J = L_sup + lambda_semi * L_semi + lambda_pxl * L_pxl

L_sup: the set loss on a labelled batch (ground truth); L_semi: the set loss on an
unlabelled batch against a frozen teacher's pseudo-labels; L_pxl: the pixel
contrast between the weak and strong views of both batches (negatives from the
other images of the joint batch, or from a memory bank). Each term is reported
unweighted as well as the total. A stage turns terms off with a zero weight or an
empty unlabelled batch (`unlabelled_batch` 0), which removes them from the program.

Inputs are normalised as DINOv2 expects (ImageNet mean and std, RGB in 0..1).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import struct

from ttt_jax.methods.cast_views import strong_view
from ttt_jax.methods.instance_augment import InstanceAugment, augment_instances
from ttt_jax.models.inputs import normalise
from ttt_jax.models.instance_seg import InstanceSeg
from ttt_jax.models.precision import apply_in
from ttt_jax.objectives import pixel_contrast as pc
from ttt_jax.objectives.set_loss import set_loss


@struct.dataclass
class CastState:
  """Parameters, BatchNorm statistics, optimizer state, step; the memory bank of the
  bank variant (else an empty dict)."""
  params: dict
  batch_stats: dict
  opt_state: optax.OptState
  step: jax.Array
  bank: object


def initial_state(variables, tx, bank=None) -> CastState:
  """The state at step 0: `variables`' parameters and statistics, `tx`'s fresh
  optimizer state, and `bank` (the bank variant's; None: none)."""
  return CastState(variables["params"], variables["batch_stats"], tx.init(variables["params"]),
                   jnp.zeros((), jnp.int32), {} if bank is None else bank)


def make_optimizer(lr: float, steps: int, weight_decay: float, clip: float, power: float = 0.9):
  """Global-norm clip, then AdamW (0.9, 0.999) on a poly(`power`) decay of `lr`."""
  sched = optax.polynomial_schedule(lr, 0.0, power, max(steps, 1))
  return optax.chain(optax.clip_by_global_norm(clip), optax.adamw(sched, 0.9, 0.999, weight_decay=weight_decay))


def make_step(cfg, tx, *, lambda_semi: float, lambda_pxl: float, contrast: pc.ContrastConfig | None, set_cfg,
              use_bank: bool = False, bank_push: int = 0, compute_dtype: str = "float32",
              augment: InstanceAugment = InstanceAugment()):
  """`step(state, lab, unl, key) -> (state, metrics)`, jitted, state donated.

  `lab`: images_BHW3 uint8, labels_BG, masks_BGHW; `unl`: images_BHW3, labels_BG,
  masks_BGhw (pseudo-labels; may be None). Both batches are augmented as the
  reference trains (`augment`: scale jitter with crop or pad, colour, flip; the weak
  view is the augmented image). `compute_dtype` 'bfloat16' runs the model in bfloat16
  (`models.precision`); matching, losses and the state stay float32."""
  model = InstanceSeg(cfg)
  apply = functools.partial(apply_in, compute_dtype, model.apply)

  def loss_fn(params, batch_stats, bank, lab, unl, key, step):
    k_aug, k_strong, k_sup, k_semi, k_pxl, k_drop = jax.random.split(key, 6)
    v = {"params": params, "batch_stats": batch_stats}
    ka1, ka2 = jax.random.split(k_aug)
    lab_img, lab_labels, lab_masks = augment_instances(ka1, lab["images_BHW3"], lab["labels_BG"],
                                                       lab["masks_BGHW"], augment)
    imgs, n_lab = [lab_img], lab_img.shape[0]
    if unl is not None:
      unl_img, unl_labels, unl_masks = augment_instances(ka2, unl["images_BHW3"], unl["labels_BG"],
                                                         unl["masks_BGhw"], augment)
      imgs.append(unl_img)
    weak = jnp.concatenate(imgs)
    out, upd = apply(v, normalise(weak), train=True, rngs={"dropout": k_drop}, mutable=["batch_stats"])
    cls, masks = out["class_LBQK"], out["mask_LBQhw"]
    l_sup, t_sup = set_loss(k_sup, cls[:, :n_lab], masks[:, :n_lab], lab_labels, lab_masks, set_cfg)
    total, metrics = l_sup, {"sup": l_sup, "sup_class": t_sup["class"], "sup_mask": t_sup["mask"],
                             "sup_dice": t_sup["dice"]}
    if unl is not None and lambda_semi > 0:
      l_semi, _ = set_loss(k_semi, cls[:, n_lab:], masks[:, n_lab:], unl_labels, unl_masks, set_cfg)
      total, metrics["semi"] = total + lambda_semi * l_semi, l_semi
    new_bank = bank
    if lambda_pxl > 0:
      z_s = apply(v, normalise(strong_view(k_strong, weak)), train=True, rngs={"dropout": k_drop},
                        mutable=["batch_stats"], method=InstanceSeg.embed)[0]
      if use_bank:
        l_pxl, new_bank = pc.memory_contrast_loss(k_pxl, bank, out["embed_BhwE"], z_s, cls[-1], masks[-1], step,
                                                  contrast, bank_push)
      else:
        l_pxl, _ = pc.pixel_contrast_loss(k_pxl, out["embed_BhwE"], z_s, cls[-1], masks[-1], step, contrast)
      total, metrics["pxl"] = total + lambda_pxl * l_pxl, l_pxl
    metrics["loss"] = total
    return total, (upd["batch_stats"], new_bank, metrics)

  def step(state: CastState, lab, unl, key):
    grads, (bs, bank, metrics) = jax.grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats, state.bank, lab, unl, key, state.step)
    upd, opt = tx.update(grads, state.opt_state, state.params)
    return CastState(optax.apply_updates(state.params, upd), bs, opt, state.step + 1, bank), metrics

  return jax.jit(step, donate_argnums=0)


def predict_fn(cfg, compute_dtype: str = "float32"):
  """Jitted `(variables, images_BHW3 uint8) -> (class_BQK, mask_BQhw)` of the last prediction."""
  model = InstanceSeg(cfg)

  @jax.jit
  def f(variables, images):
    out = apply_in(compute_dtype, model.apply, variables, normalise(images), train=False)
    return out["class_LBQK"][-1], out["mask_LBQhw"][-1]
  return f
