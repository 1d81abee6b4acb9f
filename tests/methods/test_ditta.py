"""DiTTA end to end on the tiny model: export, flow targets, warm-up then freeze;
CoTTA and zero-shot refinement; bad caches."""
import numpy as np
import pytest

from sam2_bridge import cache_schema
from sam2_bridge.propagators import FlowPropagator
from sam2_bridge.targets import write_targets
from ttt_jax.checkpoint.model_io import variables_digest
from ttt_jax.methods.defaults import ditta_config
from ttt_jax.engine import drivers
from ttt_jax.engine.schedule import warmup_frames
from ttt_jax.engine.state import merge_params
from ttt_jax.methods.ditta_export import export
from ttt_jax.methods.model_source import load_source_model
from ttt_jax.methods.video_run import VideoRunner, run
from tests.helpers import trees_equal


# Shared with tests/test_cli.py (the same programs hit the persistent compilation cache).
TINY = {"data.num_videos": 2, "data.num_frames": 6, "data.height": 32, "data.width": 32,
        "method.ditta_dim": 16, "method.ditta_radius": 1, "method.warmup_passes": 2, "method.lr": 1e-4}


def _config(tmp, objective="ditta", **method):
  """DiTTA's protocol at a tiny size with the shipped source model: a random model
  predicts one class everywhere, so every object's class score (1 - share)^0.8 would
  be 0 and nothing would be painted."""
  name = {"none": "iss"}.get(objective, objective)
  c = ditta_config(warmup=0.5, objective=objective, name=name, targets_dir=str(tmp / "targets"))
  c.update_from_flattened_dict(TINY)
  for k, v in method.items():
    c.method[k] = v
  return c


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("ditta")
  c = _config(tmp)
  ids = export(c, tmp / "export", progress=False)
  for vid in ids:
    frames = np.load(tmp / "export" / vid / "frames.npy")
    probs = np.load(tmp / "export" / vid / "iss_probs.npy")
    assert probs.shape == (warmup_frames(len(frames), 0.5), 32, 32, 8)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    iss = cache_schema.read_iss_digest(tmp / "export" / vid / "iss_probs.npy")
    for sub, mode in (("targets", "ditta"), ("zs", "zero_shot")):
      write_targets(tmp / sub / f"{vid}.npz", FlowPropagator(), "-", frames, probs, mode=mode,
                    iss_digest=iss)
  return tmp


def test_ditta_adapts_the_head_only_then_predicts_the_same_under_scan_and_stream(targets):
  c = _config(targets)
  v, mc, _ = load_source_model(c.model, c.data.num_classes)
  runner = VideoRunner(c, v, mc)
  frames = np.load(next((targets / "export").iterdir()) / "frames.npy")
  vid = next((targets / "export").iterdir()).name
  lab_scan, st = runner.run_one(frames, 0, video_id=vid)
  lab_stream, _ = runner.run_one(frames, 0, driver="stream", video_id=vid)
  np.testing.assert_array_equal(lab_scan, lab_stream)
  assert st["skipped"] == 0 and lab_scan.shape == frames.shape[:3]
  # The state after the run: the encoder is untouched, the decode head and add-on moved.
  packed = runner.prepare(frames, vid)
  state = runner.state_for(packed[0], 0)
  final, _ = runner._scan(state, drivers.ticks_for(packed, runner.schedule(len(frames))))
  before = merge_params(runner.trainable, runner.frozen)["params"]
  after = merge_params(final.trainable, final.frozen)["params"]
  assert trees_equal(before["encoder"], after["encoder"])
  assert not trees_equal(before["decode_head"], after["decode_head"])
  assert not trees_equal(before["ditta_addon"], after["ditta_addon"])
  assert not trees_equal(runner.frozen["momentum"], final.frozen["momentum"])       # EMA moved
  assert (packed[..., 6] != 255).any()                                       # painted targets
  assert bool(final.frozen["ditta_state"]["seen"].any())                     # prototypes built


def test_run_scores_only_frames_after_the_warm_up(targets):
  c = _config(targets)
  r = run(c, targets / "run_ditta", progress=False)
  w = warmup_frames(c.data.num_frames, 0.5)
  assert r["evaluated"] == "frames after the warm-up" and r["skipped_updates"] == 0
  assert all(pv["frames"] == c.data.num_frames - w for pv in r["per_video"].values())


@pytest.mark.parametrize("flags", [dict(ditta_addon=False, ditta_contrast=False),
                                   dict(ditta_distill=False)])
def test_ablations_run(targets, flags):
  r = run(_config(targets, **flags), targets / f"abl_{len(flags)}", progress=False)
  assert np.isfinite(r["metrics"]["miou"]) and r["skipped_updates"] == 0


def test_zero_shot_paints_propagated_classes_over_the_iss(targets):
  c = _config(targets, "zero_shot")
  c.method.targets_dir = str(targets / "zs")
  zs = run(c, targets / "run_zs", progress=False)
  iss = run(_config(targets, "none"), targets / "run_iss", progress=False)
  assert sorted(zs["per_video"]) == sorted(iss["per_video"])
  vid = sorted(zs["per_video"])[0]
  a = np.load(targets / "run_zs" / "predictions" / f"{vid}.npz")["labels"]
  b = np.load(targets / "run_iss" / "predictions" / f"{vid}.npz")["labels"]
  cache = np.load(targets / "zs" / f"{vid}.npz")
  covered = cache["masks"].any(1)
  np.testing.assert_array_equal(a[~covered], b[~covered])
  assert covered.any()


def test_bad_caches_are_refused_with_clear_errors(targets, tmp_path):
  c = _config(targets)
  c.method.targets_dir = str(tmp_path)
  v, mc, _ = load_source_model(c.model, c.data.num_classes)
  runner = VideoRunner(c, v, mc)
  vids = sorted(p.name for p in (targets / "export").iterdir())
  frames = np.load(targets / "export" / vids[0] / "frames.npy")
  with pytest.raises(FileNotFoundError, match="sam2-bridge targets"):
    runner.prepare(frames, vids[0])
  import shutil
  shutil.copy(targets / "targets" / f"{vids[1]}.npz", tmp_path / f"{vids[0]}.npz")   # another video's
  with pytest.raises(cache_schema.CacheMismatch, match="another video"):
    runner.prepare(frames, vids[0])
  shutil.copy(targets / "zs" / f"{vids[0]}.npz", tmp_path / f"{vids[0]}.npz")        # zero-shot, not DiTTA
  with pytest.raises(cache_schema.CacheMismatch, match="'zero_shot' targets"):
    runner.prepare(frames, vids[0])
  c.method.targets_teacher = "sam2:sam2.1_hiera_t"
  shutil.copy(targets / "targets" / f"{vids[0]}.npz", tmp_path / f"{vids[0]}.npz")
  with pytest.raises(cache_schema.CacheMismatch, match="teacher 'flow'"):
    VideoRunner(c, v, mc).prepare(frames, vids[0])
  c.method.targets_teacher = ""
  frames1 = np.load(targets / "export" / vids[1] / "frames.npy")
  probs1 = np.load(targets / "export" / vids[1] / "iss_probs.npy")
  write_targets(tmp_path / f"{vids[1]}.npz", FlowPropagator(), "-", frames1, probs1, mode="ditta",
                iss_digest="0" * 64)                                      # another ISS model's
  with pytest.raises(cache_schema.CacheMismatch, match="another ISS model"):
    VideoRunner(c, v, mc).prepare(frames1, vids[1])


def test_export_records_its_model_and_refuses_to_mix_models(targets, tmp_path):
  c = _config(targets)
  v, _, _ = load_source_model(c.model, c.data.num_classes)
  vid = sorted(p.name for p in (targets / "export").iterdir())[0]
  assert cache_schema.read_iss_digest(targets / "export" / vid / "iss_probs.npy") == variables_digest(v)
  assert cache_schema.read_meta(targets / "targets" / f"{vid}.npz")["params"]["iss_digest"] == \
      variables_digest(v)
  export(c, tmp_path, progress=False)
  c.model.checkpoint = "random"                                          # another model, same folder
  with pytest.raises(ValueError, match="exported with another ISS model"):
    export(c, tmp_path, progress=False)


# ---------------------------------------------------------------------------
# Fidelity to the reference (jihun1998/DiTTA): each test fails under the earlier rule.
# ---------------------------------------------------------------------------


def _runner_and_clip(targets, **method):
  c = _config(targets, **method)
  v, mc, _ = load_source_model(c.model, c.data.num_classes)
  runner = VideoRunner(c, v, mc)
  vid = sorted(p.name for p in (targets / "export").iterdir())[0]
  frames = np.load(targets / "export" / vid / "frames.npy")
  return runner, runner.prepare(frames, vid), vid


def test_distillation_label_is_the_iss_prediction_where_no_object_gives_a_class(targets):
  """ditta/tta.py: `distill_label = iss_pred.clone(); distill_label[keep] = label[keep]`:
  every warm-up pixel is supervised, by the ISS argmax where no object gives a class."""
  runner, packed, vid = _runner_and_clip(targets)
  probs = np.load(targets / "export" / vid / "iss_probs.npy")
  w = len(probs)
  cls, objs = packed[:w, ..., 6], packed[:w, ..., 7]
  assert (cls != 255).all()
  uncovered = objs == 255
  assert uncovered.any() and (~uncovered).any()
  np.testing.assert_array_equal(cls[uncovered], probs.argmax(-1)[uncovered])


def test_addon_value_is_frame_t_minus_1s_live_logits_with_gradient(targets):
  """The add-on's value (the reference's x[0, 0]) carries gradient into the plain
  classifier; detached (the earlier rule), the add-on term gives it none."""
  import jax
  full, packed, _ = _runner_and_clip(targets, ditta_contrast=False)
  plain, _, _ = _runner_and_clip(targets, ditta_contrast=False, ditta_addon=False)
  batch = packed[1:2]                                       # frame 1: it has a previous frame
  key = jax.random.key(3)
  g = lambda r: jax.grad(lambda tr: r.learner.loss_fn(tr, r.frozen, batch, key)[0])(r.trainable)
  g_full, g_plain = g(full), g(plain)
  addon_part = (np.asarray(g_full["params"]["decode_head"]["classifier"]["kernel"])
                - np.asarray(g_plain["params"]["decode_head"]["classifier"]["kernel"]))
  assert np.abs(addon_part).max() > 1e-6


def test_momentum_follows_the_parameters_after_each_optimizer_step(targets):
  """ditta/tta.py updates the EMA after `optimizer.step()`: m' = 0.99 m + 0.01 w_new
  (the earlier rule used the weights before the step; lr 1e-2 makes the two differ by
  far more than the tolerance)."""
  import jax
  from ttt_jax.engine.step import Tick, make_step
  runner, packed, _ = _runner_and_clip(targets, lr=1e-2)
  state = runner.state_for(packed[0], 0)
  m0 = jax.tree.map(np.asarray, state.frozen["momentum"])
  on = np.array(True)
  new, _ = jax.jit(make_step(runner.learner, runner.step_cfg))(
      state, Tick(frame_HWC=packed[1], push=on, adapt=on, predict=np.array(False)))
  want = jax.tree.map(lambda m, w: 0.99 * m + 0.01 * np.asarray(w), m0, new.trainable)
  for a, b in zip(jax.tree.leaves(new.frozen["momentum"]), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-7)
  assert not trees_equal(new.trainable, runner.trainable)


def test_momentum_model_runs_in_train_mode_on_the_same_clip(targets):
  """The prototypes come from the momentum model in train mode on the clip (t-1, t):
  its BatchNorm uses the clip's statistics, so frame t-1 changes frame t's prototypes
  (in eval mode, as before, it could not)."""
  import jax
  runner, packed, _ = _runner_and_clip(targets)
  batch = packed[1:2].copy()
  key = jax.random.key(0)
  protos = lambda b: np.asarray(runner.learner.loss_fn(runner.trainable, runner.frozen, b, key)[1]
                                ["ditta_state"]["protos"])
  other = batch.copy()
  other[..., 3:6] = packed[-1:, ..., :3]                    # another frame as t-1
  assert np.abs(protos(batch) - protos(other)).max() > 1e-4


def test_cotta_teacher_follows_the_student_after_the_step_then_restores(targets):
  """CoTTA's order: optimizer step, teacher EMA of the updated student (0.999), then
  stochastic restore of the student towards the source weights."""
  import jax
  from ttt_jax.engine.step import Tick, make_step
  c = _config(targets, "cotta")
  c.method.cotta_restore = 1.0                              # restore everything: student = source
  c.method.lr = 1.0                                         # a step the EMA's 0.001 share shows
  c.method.cotta_scales = (1.0,)                            # one scale: a 6x smaller program
  v, mc, _ = load_source_model(c.model, c.data.num_classes)
  runner = VideoRunner(c, v, mc)
  frames = np.load(next((targets / "export").iterdir()) / "frames.npy")
  state = runner.state_for(frames[0], 0)
  on = np.array(True)
  new, _ = jax.jit(make_step(runner.learner, runner.step_cfg))(
      state, Tick(frame_HWC=frames[0], push=on, adapt=on, predict=np.array(False)))
  assert trees_equal(new.trainable, runner.frozen["source"])          # fully restored
  moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in
              zip(jax.tree.leaves(new.frozen["momentum"]), jax.tree.leaves(runner.frozen["momentum"])))
  assert moved > 1e-4                                       # the EMA saw the updated student
