"""One online TTT-MAE step of ttt-jax against one step of the eager PyTorch loop
(`benchmarks/torch_reference.py`, the reference trainer's optimizer), fed the same
converted weights, views and masks.

What must agree (float32 on CPU): the loss, the gradients, and the weights after
each of two steps: AdamW with the encoder at 0.1 x the lr, weight decay except on
normalisation layers, the global-norm clip, and the optimizer state carried from
the first step to the second (the reference's default). The main head gets no
gradient: PyTorch's AdamW skips it, ttt-jax does not train it.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from benchmarks import torch_reference as ref  # noqa: E402
from ttt_jax.checkpoint.convert_segformer import convert_state_dict  # noqa: E402
from ttt_jax.cli.config_io import apply_overrides, load_config_file  # noqa: E402
from ttt_jax.engine.state import Context, path_str  # noqa: E402
from ttt_jax.engine.step import StepConfig, Tick, init_state, make_step  # noqa: E402
from ttt_jax.methods.base import SourceModel  # noqa: E402
from ttt_jax.methods.segformer_task import SegTask  # noqa: E402
from ttt_jax.methods.video_ttt import VideoTTT, mae_views_loss  # noqa: E402
from ttt_jax.models.segformer import segformer_config  # noqa: E402
from flax import traverse_util  # noqa: E402

from tests.helpers import CONFIGS  # noqa: E402

B, H, W = 4, 32, 32
LR = 1e-3   # 10x the reference's, so one step moves every weight well past the tolerance


def _state_dict(enc, head, recon, grads=None):
  """Classic-named numpy state dict of the three modules (or of their gradients:
  zeros where a parameter got none)."""
  sd = {}
  for prefix, mod in (("segformer.", enc), ("decode_head.", head), ("recon.", recon)):
    for name, p in mod.named_parameters():
      if grads is None:
        sd[prefix + name] = p.detach().numpy().copy()
      else:
        g = grads[id(p)]
        sd[prefix + name] = np.zeros(p.shape, np.float32) if g is None else g.numpy()
  return sd


def _flat(tree):
  return {path_str(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


@pytest.fixture(scope="module")
def both():
  torch.manual_seed(0)
  enc, head, recon = ref.build(8, head_norm="group")
  cfg = segformer_config("small", 8, head_norm="group")
  variables = convert_state_dict(_state_dict(enc, head, recon), cfg, jax.random.key(0))

  config = apply_overrides(load_config_file(f"{CONFIGS / 'online_ttt_mae'}.py"),
                           [f"method.optimizer.lr={LR}", f"method.batch_size={B}"])
  plan = VideoTTT().build(config, SourceModel(variables, cfg, {}))
  views_loss = mae_views_loss(SegTask(cfg), config.method)

  def loss_fn(trainable, ctx, batch, key):
    # The tick carries the views and masks; a batch of one tick drawn from memory.
    return (views_loss(trainable, ctx, batch["views"][0], batch["mask"][0], key),
            (ctx.stats, ctx.method_state))

  # Prediction is not part of the parity: the ticks only adapt.
  learner = dataclasses.replace(plan.learner, loss_fn=loss_fn,
                                predict_fn=lambda tr, ctx, data: jnp.zeros((), jnp.int32))
  step_cfg = StepConfig(memory_slots=1, max_steps=1, batch_size=1)
  hp = dict(plan.hparams(2), window=jnp.asarray(1, jnp.int32))

  rng = np.random.default_rng(0)
  ticks = []
  for _ in range(2):
    views = rng.normal(size=(B, H, W, 3)).astype(np.float32)
    mask = (rng.random((B, H // 16, W // 16)) < 0.85).astype(np.float32).repeat(16, 1).repeat(16, 2)
    ticks.append((views, mask))

  v = plan.variables
  state = init_state(learner, step_cfg, trainable=v.trainable, stats=v.stats, frozen=v.frozen,
                     hparams=hp, example={"views": ticks[0][0], "mask": ticks[0][1]},
                     key=jax.random.key(0))
  step = jax.jit(make_step(learner, step_cfg))
  ctx = Context(frozen=state.frozen, stats=state.stats, method_state=state.method_state,
                ema=state.ema, anchor=state.anchor, hparams=state.hparams)
  jax_grads = jax.jit(jax.grad(lambda tr: views_loss(tr, ctx, *ticks[0], None)))(state.trainable)
  jax_trainable, jax_losses = [], []
  for views, mask in ticks:
    tick = Tick(data={"views": views, "mask": mask}, push=jnp.array(True), adapt=jnp.array(True),
                predict=jnp.array(False))
    state, out = step(state, tick)
    jax_trainable.append(_flat(state.trainable))
    jax_losses.append(float(out["loss"]))

  opt = ref.reference_optimizer(enc, head, recon, lr=LR)
  torch_losses, torch_weights, torch_grads = [], [], None
  for views, mask in ticks:
    loss, grads = ref.adapt_step(enc, recon, opt, torch.from_numpy(views).permute(0, 3, 1, 2),
                                 torch.from_numpy(mask))
    torch_losses.append(float(loss))
    torch_grads = torch_grads or grads
    torch_weights.append(_flat(convert_state_dict(_state_dict(enc, head, recon), cfg, jax.random.key(0))))
  grads_sd = _state_dict(enc, head, recon, torch_grads)
  return dict(variables=_flat(variables), jax_grads=_flat(jax_grads), jax_trainable=jax_trainable,
              jax_losses=jax_losses, torch_losses=torch_losses, torch_weights=torch_weights,
              torch_grads=_flat(convert_state_dict(grads_sd, cfg, jax.random.key(0))))


def test_loss_and_gradients_match_the_pytorch_step(both):
  np.testing.assert_allclose(both["jax_losses"], both["torch_losses"], rtol=2e-6,
                             err_msg="reconstruction loss differs from the PyTorch loop's")
  tg = both["torch_grads"]
  assert set(both["jax_grads"]) == {k for k in tg if not k.startswith("params/decode_head/")}
  scale = max(np.abs(g).max() for g in tg.values())
  for k, g in both["jax_grads"].items():
    np.testing.assert_allclose(g, tg[k], rtol=1e-3, atol=1e-5 * scale, err_msg=f"gradient of {k}")
  norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in tg.values()))
  assert norm > 0.01 * 10, f"gradient norm {norm:.4g}: the 0.01 clip would not act; the test is too weak"


def test_updated_weights_match_after_each_of_two_steps(both):
  """Each group's weights within 1% of its step size (lr) everywhere and 0.1% for
  99.9% of them. Adam divides by |gradient| + 1e-8, so the few gradients near 1e-8
  turn float noise into a visible share of their step; the rest agree closely."""
  before = both["variables"]
  for i, (jw, tw) in enumerate(zip(both["jax_trainable"], both["torch_weights"])):
    for group, lr in (("params/encoder/", LR * 0.1), ("params/recon/", LR)):
      keys = [k for k in jw if k.startswith(group)]
      diff = np.concatenate([np.abs(jw[k] - tw[k]).ravel() for k in keys]) / lr
      worst = keys[int(np.argmax([np.abs(jw[k] - tw[k]).max() for k in keys]))]
      assert diff.max() < 1e-2, f"{worst} after step {i + 1}: {diff.max():.3g} of a step from PyTorch's"
      assert np.quantile(diff, 0.999) < 1e-3, f"{group} after step {i + 1}: many weights differ"
    # The main head is trained by neither (no gradient: PyTorch's AdamW skips it).
    for k, w in tw.items():
      if k.startswith("params/decode_head/"):
        np.testing.assert_array_equal(w, before[k])
        np.testing.assert_array_equal(w, both["torch_weights"][0][k])


def test_steps_are_large_against_the_tolerance_at_two_learning_rates(both):
  """Guards the test above: Adam's first step moves a weight by about its lr (less
  where the clipped gradient is near Adam's epsilon), so most of the encoder's
  weights (lr / 10) and the heads' must have moved that far."""
  before, after = both["variables"], both["torch_weights"][0]
  for group, lr in (("params/encoder/", LR * 0.1), ("params/recon/", LR)):
    moved = np.concatenate([np.abs(after[k] - before[k]).ravel() for k in after if k.startswith(group)])
    assert np.quantile(moved, 0.9) == pytest.approx(lr, rel=0.1), (group, np.quantile(moved, 0.9))


def test_weight_decay_spares_normalisation_layers_as_the_reference_does():
  """Zero gradients leave only AdamW's decoupled decay: the same parameters decay by
  the same amount in the PyTorch optimizer and the config's optax one."""
  torch.manual_seed(1)
  enc, head, recon = ref.build(8, head_norm="group")
  cfg = segformer_config("small", 8, head_norm="group")
  variables = convert_state_dict(_state_dict(enc, head, recon), cfg, jax.random.key(0))
  config = load_config_file(f"{CONFIGS / 'online_ttt_mae'}.py")
  plan = VideoTTT().build(config, SourceModel(variables, cfg, {}))

  opt = ref.reference_optimizer(enc, head, recon, lr=LR)
  for g in opt.param_groups:
    for p in g["params"]:
      if not any(p is q for q in head.parameters()):
        p.grad = torch.zeros_like(p)
  opt.step()
  want = _flat(convert_state_dict(_state_dict(enc, head, recon), cfg, jax.random.key(0)))

  tr = plan.variables.trainable
  tx = plan.learner.optimizer(dict(plan.hparams(2), lr=jnp.float32(LR), lr_0=jnp.float32(LR * 0.1)))

  @jax.jit  # op by op, the update of ~100 leaves compiles hundreds of small programs
  def decay_only(tr):
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, tr), tx.init(tr), tr)
    return optax.apply_updates(tr, updates)
  got = _flat(decay_only(tr))
  start = _flat(tr)
  checked = 0
  for k, w in got.items():
    np.testing.assert_allclose(w, want[k], rtol=1e-6, atol=1e-9, err_msg=k)
    if np.any(start[k] != 0):  # a zero weight stays zero, decayed or not
      is_norm = "norm" in k.split("/")[-2]
      assert np.array_equal(w, start[k]) == is_norm, f"{k}: decayed={not is_norm} expected"
      checked += 1
  assert checked > 20
