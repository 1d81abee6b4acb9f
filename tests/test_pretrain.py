"""Joint pretraining: a few steps, checkpoints, resume, and a loadable model."""
import json

import numpy as np
import pytest

from ttt_jax.checkpoint.model_io import load_model
from ttt_jax.cli.config_io import load_config_file
from tests.helpers import trees_equal


def _cfg(steps, variant=""):
  c = load_config_file("configs/pretrain_synthetic.py" + (f":{variant}" if variant else ""))
  c.main_steps = 0
  c.model.size = "tiny"
  c.data.num_images, c.data.height, c.data.width = 8, 32, 32
  c.steps, c.batch_size, c.save_every, c.log_every = steps, 2, 2, 1
  return c


def test_pretrain_resumes_and_writes_model_and_data_parallel_matches(tmp_path):
  """Killed after step 1 and resumed on one device, the run ends with the weights of
  an uninterrupted run with the batch split over the 4 simulated devices (float
  round-off); a batch that does not split is refused."""
  import jax
  from ttt_jax.checkpoint.model_io import init_variables
  from ttt_jax.models.segformer import segformer_config
  from ttt_jax.train.pretrain import pretrain

  def cfg(dp, batch=4):
    c = _cfg(2)
    c.batch_size, c.data_parallel, c.save_every = batch, dp, 1
    return c
  assert pretrain(cfg(0), tmp_path, progress=False, stop_at=1) is None  # "killed" after step 1
  assert (tmp_path / "checkpoints" / "1").exists() and not (tmp_path / "model").exists()
  d = pretrain(cfg(0), tmp_path, progress=False)  # resumes at step 1, not from scratch
  v, mcfg, meta = load_model(d)
  assert mcfg.num_labels == 8 and meta["log"][0]["step"] == 2
  assert json.loads((d / "model.json").read_text())["arch"] == "segformer"
  v4, _, _ = load_model(pretrain(cfg(-1), tmp_path / "four", progress=False))
  # In units of the step AdamW takes (the warm-up's lr 0 then lr: one step of about lr
  # per weight): Adam divides by |gradient| + eps, so the summation order of the split
  # batch moves a weight whose gradients nearly cancel by a visible share of its step.
  # Measured on an Intel Xeon: at most 0.26% of a step, 0.13% for 99.9% of the weights.
  c = cfg(0)
  init = init_variables(segformer_config("tiny", 8, head_norm=c.model.head_norm), jax.random.key(c.seed),
                        (32, 32))["params"]
  for group, lr in (("encoder", c.lr * c.encoder_lr_mult), ("decode_head", c.lr), ("recon", c.lr)):
    one, four, start = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(t[group])])
                        for t in (v["params"], v4["params"], init))
    diff = np.abs(four - one) / lr
    assert diff.max() < 1e-2, f"{group}: {diff.max():.3g} of a step between 4 devices and one"
    assert np.quantile(diff, 0.999) < 5e-3, f"{group}: many weights differ between 4 devices and one"
    assert np.median(np.abs(one - start)) > 0.1 * lr, f"{group} did not move: the comparison is void"
  with pytest.raises(ValueError, match="batch_size=3 does not split over data_parallel=4 devices"):
    pretrain(cfg(-1, batch=3), tmp_path / "bad", progress=False)


def test_mae_phase_then_probe_with_colour_jitter(tmp_path):
  """mae_steps: reconstruction alone, main head untouched; then encoder_lr_mult=0
  keeps the MAE encoder fixed while the heads train (and a resume crosses phases)."""
  import jax
  import orbax.checkpoint as ocp
  from ttt_jax.checkpoint.model_io import init_variables
  from ttt_jax.models.segformer import segformer_config
  from ttt_jax.train.pretrain import pretrain
  c = _cfg(4)
  c.mae_steps, c.encoder_lr_mult, c.photometric = 2, 0.0, True
  assert pretrain(c, tmp_path, progress=False, stop_at=2) is None
  with ocp.CheckpointManager(tmp_path / "checkpoints") as m:
    mid = m.restore(2, args=ocp.args.StandardRestore())["params"]
  init = init_variables(segformer_config("tiny", 8, head_norm=c.model.head_norm), jax.random.key(c.seed),
                        (32, 32))["params"]
  final = load_model(pretrain(c, tmp_path, progress=False))[0]["params"]
  assert trees_equal(mid["decode_head"], init["decode_head"])      # phase 1 leaves the main head alone
  assert not trees_equal(mid["encoder"], init["encoder"]) and not trees_equal(mid["recon"], init["recon"])
  assert trees_equal(final["encoder"], mid["encoder"])             # phase 2 probes a fixed encoder
  assert not trees_equal(final["decode_head"], mid["decode_head"])


def test_main_task_phase_then_joint_with_the_reconstruction_head(tmp_path):
  """The reference's recipe: a main-task model first (the reconstruction head waits,
  untouched), then joint training adds it."""
  import jax
  import orbax.checkpoint as ocp
  from ttt_jax.checkpoint.model_io import init_variables
  from ttt_jax.models.segformer import segformer_config
  from ttt_jax.train.pretrain import pretrain
  c = _cfg(4)
  c.main_steps = 2
  assert pretrain(c, tmp_path, progress=False, stop_at=2) is None
  with ocp.CheckpointManager(tmp_path / "checkpoints") as m:
    mid = m.restore(2, args=ocp.args.StandardRestore())["params"]
  init = init_variables(segformer_config("tiny", 8, head_norm="group"), jax.random.key(c.seed),
                        (32, 32))["params"]
  assert trees_equal(mid["recon"], init["recon"])
  assert not trees_equal(mid["encoder"], init["encoder"]) and not trees_equal(mid["decode_head"], init["decode_head"])
  v, cfg, _ = load_model(pretrain(c, tmp_path, progress=False))
  assert not trees_equal(v["params"]["recon"], init["recon"])
  assert cfg.head_norm == "group" and cfg.drop_path_rate == 0.1 and "batch_stats" not in v
  c.mae_steps = 1
  import pytest
  with pytest.raises(ValueError, match="at most one first phase"):
    pretrain(c, tmp_path / "both", progress=False)


def test_reconstruction_head_batchnorm_keeps_the_statistics_of_masked_inputs():
  """Its running statistics follow a train-mode pass on the masked input it is trained
  and tested on (before: a pass on the unmasked image, 1.4 to 2.3 sigma off)."""
  import jax
  import jax.numpy as jnp
  from ttt_jax.checkpoint.model_io import init_variables
  from ttt_jax.data import synthetic
  from ttt_jax.models.segformer import YSegFormer, segformer_config
  from ttt_jax.models.inputs import mask_input, normalise, visible_input
  from ttt_jax.objectives.reconstruction import patch_mask
  from ttt_jax.train.pretrain import TrainState, _augment_pair, make_optimizer, make_train_step
  c = _cfg(2, "joint_bn")
  mcfg = segformer_config("tiny", 8)
  model = YSegFormer(mcfg)
  v = init_variables(mcfg, jax.random.key(0), (32, 32))
  tx = make_optimizer(c)
  # A copy: the step donates its state, and `v` is read after it.
  state = jax.tree.map(jnp.copy, TrainState(v["params"], v["batch_stats"], tx.init(v["params"]),
                                            np.zeros((), np.int32)))
  imgs, labs = synthetic.make_stills(1, 4, 32, 32)
  key = jax.random.key(5)
  new, _ = make_train_step(model, tx, c)(state, imgs, labs, key)
  assert all(x.is_deleted() for x in jax.tree.leaves(state.params)), "the step donates its state"
  k_aug, k_mask, k_drop = jax.random.split(key, 3)
  img, _ = _augment_pair(k_aug, normalise(imgs), labs, c.crop_min_scale, 8)
  m = patch_mask(k_mask, 4, 32, 32, patch=c.patch, ratio=c.mask_ratio)
  run = lambda x: model.apply(v, x, method="reconstruct", train=True, mutable=["batch_stats"],
                              rngs={"dropout": jax.random.split(k_drop)[1]})[1]["batch_stats"]["recon"]
  want, unmasked = run(mask_input(img, m)), run(visible_input(img))
  got = new.batch_stats["recon"]["batch_norm"]
  np.testing.assert_allclose(got["mean"], want["batch_norm"]["mean"], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got["var"], want["batch_norm"]["var"], rtol=1e-4, atol=1e-5)
  assert np.abs(np.asarray(got["mean"]) - np.asarray(unmasked["batch_norm"]["mean"])).max() > 1e-3


def test_the_stand_in_teacher_and_the_point_model_train_resume_and_load(tmp_path):
  """TTT-KD's two trainings (`ttt-jax pretrain` with task room_teacher, then ttt_kd):
  the point model's killed after step 2 resumes there (both run the resumable loop
  that `test_pretrain_resumes_and_writes_model_and_data_parallel_matches` checks
  against an uninterrupted run).
  Both compute in bfloat16 here (float32 is the same code less the casts): finite
  losses, float32 weights saved."""
  from ttt_jax.methods.kd_targets import Teacher
  from ttt_jax.train.point_pretrain import pretrain_points
  from ttt_jax.train.teacher import train_teacher
  tc = load_config_file("configs/room_teacher.py:tiny")
  tc.model.compute_dtype = "bfloat16"
  teacher_dir = train_teacher(tc, tmp_path / "t", progress=False)
  t = Teacher(teacher_dir)
  assert t.features(np.zeros((2, 24, 32, 3), np.uint8)).shape == (2, 6, 8, t.dim)
  assert load_model(teacher_dir)[2]["note"].endswith("not DINOv2")
  pc = load_config_file("configs/pretrain_ttt_kd.py:tiny")
  pc.teacher_path = str(teacher_dir)
  pc.model.compute_dtype = "bfloat16"
  assert pretrain_points(pc, tmp_path / "p", progress=False, stop_at=2) is None
  assert (tmp_path / "p" / "checkpoints" / "2").exists() and not (tmp_path / "p" / "model").exists()
  v, cfg, meta = load_model(pretrain_points(pc, tmp_path / "p", progress=False), "point_seg")
  assert cfg.teacher_dim == t.dim and cfg.num_classes == 9 and meta["log"][0]["step"] == 4
  assert meta["teacher_digest"] == t.digest
  assert all(np.isfinite(r["ce"]) and np.isfinite(r["kd"]) for r in meta["log"])
  for tree in (v, load_model(teacher_dir)[0]):
    assert {np.asarray(x).dtype for x in __import__("jax").tree.leaves(tree)} == {np.dtype("float32")}
  with pytest.raises(ValueError, match="holds a 'room_teacher' model"):
    load_model(teacher_dir, "segformer")


def test_bfloat16_pretraining_computes_in_bfloat16_and_keeps_float32_state():
  """Traced, not run: the step's model ops are bfloat16, its new state float32."""
  import jax
  import jax.numpy as jnp
  from ttt_jax.checkpoint.model_io import init_variables
  from ttt_jax.models.segformer import YSegFormer, segformer_config
  from ttt_jax.train.loop import TrainState
  from ttt_jax.train.pretrain import make_optimizer, make_train_step
  c = _cfg(2)
  jaxprs = {}
  for dt in ("float32", "bfloat16"):
    mcfg = segformer_config("tiny", 8, head_norm=c.model.head_norm, compute_dtype=dt)
    tx = make_optimizer(c)
    v = init_variables(mcfg, jax.random.key(0), (32, 32))
    state = TrainState(v["params"], v.get("batch_stats", {}), tx.init(v["params"]), jnp.zeros((), jnp.int32))
    args = (state, np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 32, 32), np.int32), jax.random.key(1))
    step = make_train_step(YSegFormer(mcfg), tx, c)
    new, _ = jax.eval_shape(step, *args)
    assert {x.dtype for x in jax.tree.leaves(new.params)} == {np.dtype("float32")}, dt
    jaxprs[dt] = str(jax.make_jaxpr(step)(*args))
  assert "bf16" not in jaxprs["float32"] and jaxprs["bfloat16"].count("bf16[") > 100


def test_the_b2_variant_and_its_compute_options_pretrain(tmp_path):
  """Issue 14's `:b2` source (B2, 256 x 256, bfloat16, every device) combines with
  `joint_bn`; its compute options run: a model with two-block stages, its stages
  scanned, bfloat16, the batch over the 4 simulated devices, writes the same parameter
  layout as an unscanned model (a loadable checkpoint)."""
  import jax
  from ttt_jax.checkpoint.model_io import init_variables
  from ttt_jax.models.segformer import segformer_config
  from ttt_jax.train.pretrain import pretrain
  b2 = load_config_file("configs/pretrain_synthetic.py:b2")
  assert (b2.model.size, b2.model.compute_dtype, b2.data_parallel, b2.data.height, b2.data.width,
          b2.model.head_norm) == ("b2", "bfloat16", -1, 256, 256, "group")
  bn = load_config_file("configs/pretrain_synthetic.py:b2,joint_bn")
  assert (bn.model.size, bn.data.height, bn.model.head_norm, bn.recon_weight) == ("b2", 256, "batch", 1.0)
  with pytest.raises(ValueError, match="unknown variant 'b9'"):
    load_config_file("configs/pretrain_synthetic.py:b9")
  c = _cfg(2, "b2")
  c.model.size, c.model.scan_blocks = "small", True   # its stage 3 has 2 blocks
  c.data.height = c.data.width = 32
  c.batch_size = 4
  v, mcfg, meta = load_model(pretrain(c, tmp_path, progress=False))
  assert meta["log"][-1]["step"] == 2 and all(np.isfinite(x) for r in meta["log"] for x in r.values())
  plain = init_variables(segformer_config("small", 8, head_norm="group"), jax.random.key(0), (32, 32))
  assert jax.tree.structure(v["params"]) == jax.tree.structure(plain["params"])
  assert {x.dtype for x in jax.tree.leaves(v["params"])} == {np.dtype("float32")}
  # The compute options are the run's (recorded in its meta), not the saved architecture's.
  assert (mcfg.scan_blocks, mcfg.compute_dtype) == (False, "float32")
  assert (meta["config"]["model"]["scan_blocks"], meta["config"]["model"]["compute_dtype"]) == (True, "bfloat16")
