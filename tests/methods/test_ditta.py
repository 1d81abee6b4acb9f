"""DiTTA end to end on the tiny model: export, flow targets, warm-up then freeze;
CoTTA and zero-shot refinement; bad caches."""
import jax
import numpy as np
import pytest

from sam2_bridge import cache_schema
from sam2_bridge.propagators import FlowPropagator
from sam2_bridge.targets import write_targets
from ttt_jax.checkpoint.model_io import variables_digest
from ttt_jax.methods.defaults import ditta_config
from ttt_jax.engine import drivers
from ttt_jax.engine.schedule import warmup_frames
from ttt_jax.cli.config_io import apply_overrides
from ttt_jax.methods.ditta_export import export
from ttt_jax.methods.model_source import load_source_model
from ttt_jax.runner.run import make_runner, run
from tests.helpers import trees_equal


# Shared with tests/test_cli.py (the same programs hit the persistent compilation cache).
TINY = ("data.num_videos=2", "data.num_frames=6", "data.height=32", "data.width=32")
TINY_DITTA = ("method.ditta.dim=16", "method.ditta.radius=1", "method.warmup_passes=2",
              "method.optimizer.lr=1e-4")


def _config(tmp, kind="ditta", *overrides):
  """DiTTA's protocol at a tiny size with the shipped source model: a random model
  predicts one class everywhere, so every object's class score (1 - share)^0.8 would
  be 0 and nothing would be painted."""
  name = {"none": "iss"}.get(kind, kind)
  c = ditta_config(warmup=0.5, kind=kind, name=name, targets_dir=str(tmp / "targets"))
  return apply_overrides(c, [*TINY, *(TINY_DITTA if kind == "ditta" else ()), *overrides])


def _runner(c):
  return make_runner(c)[0]


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


def test_ditta_adapts_the_head_only_and_predicts_the_same_under_every_driver(targets):
  """DiTTA's ticks are pytrees (frame, t-1, targets): scan, stream and sharded over 4
  simulated devices (each device runs the batched driver on its videos, so the batched
  path is this one; the engine's tests compare it unsharded) give bit-identical
  predictions (its configs batch videos with `engine.batching='map'`: vectorised, a few
  pixels in a thousand differ)."""
  runner = _runner(_config(targets))
  vids = sorted(p.name for p in (targets / "export").iterdir())
  frames = [np.load(targets / "export" / v / "frames.npy") for v in vids]
  ref = [runner.run_one(v, f, i)[0] for i, (v, f) in enumerate(zip(vids, frames))]
  np.testing.assert_array_equal(runner.run_one(vids[0], frames[0], 0, driver="stream")[0], ref[0])
  items = [(v, f) for v, f in zip(vids, frames)] * 2                  # 4 videos for 4 devices
  res = runner.run_many(items, [0, 1, 0, 1], mesh=drivers.video_mesh())
  for (lab, _), r in zip(res, ref * 2):
    np.testing.assert_array_equal(lab, r)
  lab_scan, st = runner.run_one(vids[0], frames[0], 0)
  assert st["skipped"] == 0 and lab_scan.shape == frames[0].shape[:3]
  # The state after the run: the encoder is untouched, the decode head and add-on moved.
  state, data = runner.start(vids[0], frames[0], 0)
  final, _ = runner._jitted["scan"](state, drivers.ticks_for(data, runner.plan.schedule(len(frames[0]))))
  before, after = runner.plan.variables.frozen["params"], final.trainable["params"]
  assert "encoder" in before and "encoder" not in after                     # never trained
  init = runner.plan.variables.trainable["params"]
  assert not trees_equal(init["decode_head"], after["decode_head"])
  assert not trees_equal(init["ditta_addon"], after["ditta_addon"])
  assert not trees_equal(runner.plan.variables.trainable, final.ema)       # EMA moved
  assert (data["cls"] != 255).any()                                         # painted targets
  assert bool(final.method_state["seen"].any())                             # prototypes built


def test_run_scores_only_frames_after_the_warm_up(targets):
  c = _config(targets)
  r = run(c, targets / "run_ditta", progress=False)
  w = warmup_frames(c.data.num_frames, 0.5)
  assert r["evaluated"] == "frames after the warm-up" and r["skipped_updates"] == 0
  assert all(pv["frames"] == c.data.num_frames - w for pv in r["per_video"].values())


@pytest.mark.parametrize("flags", [("method.ditta.addon=False", "method.ditta.contrast=False"),
                                   ("method.ditta.distill=False",)])
def test_ablations_run(targets, flags):
  r = run(_config(targets, "ditta", *flags), targets / f"abl_{len(flags)}", progress=False)
  assert np.isfinite(r["metrics"]["miou"]) and r["skipped_updates"] == 0


def test_zero_shot_paints_propagated_classes_over_the_iss(targets):
  c = _config(targets, "zero_shot", f"method.targets.dir={targets / 'zs'}")
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
  c = _config(targets, "ditta", f"method.targets.dir={tmp_path}")
  runner = _runner(c)
  vids = sorted(p.name for p in (targets / "export").iterdir())
  frames = np.load(targets / "export" / vids[0] / "frames.npy")
  with pytest.raises(FileNotFoundError, match="sam2-bridge targets"):
    runner.plan.make_ticks(vids[0], frames)
  import shutil
  shutil.copy(targets / "targets" / f"{vids[1]}.npz", tmp_path / f"{vids[0]}.npz")   # another video's
  with pytest.raises(cache_schema.CacheMismatch, match="another video"):
    runner.plan.make_ticks(vids[0], frames)
  shutil.copy(targets / "zs" / f"{vids[0]}.npz", tmp_path / f"{vids[0]}.npz")        # zero-shot, not DiTTA
  with pytest.raises(cache_schema.CacheMismatch, match="'zero_shot' targets"):
    runner.plan.make_ticks(vids[0], frames)
  c.method.targets.teacher = "sam2:sam2.1_hiera_t"
  shutil.copy(targets / "targets" / f"{vids[0]}.npz", tmp_path / f"{vids[0]}.npz")
  with pytest.raises(cache_schema.CacheMismatch, match="teacher 'flow'"):
    _runner(c).plan.make_ticks(vids[0], frames)
  c.method.targets.teacher = ""
  frames1 = np.load(targets / "export" / vids[1] / "frames.npy")
  probs1 = np.load(targets / "export" / vids[1] / "iss_probs.npy")
  write_targets(tmp_path / f"{vids[1]}.npz", FlowPropagator(), "-", frames1, probs1, mode="ditta",
                iss_digest="0" * 64)                                      # another ISS model's
  with pytest.raises(cache_schema.CacheMismatch, match="another ISS model"):
    _runner(c).plan.make_ticks(vids[1], frames1)


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


def _runner_and_clip(targets, *overrides):
  runner = _runner(_config(targets, "ditta", *overrides))
  vid = sorted(p.name for p in (targets / "export").iterdir())[0]
  frames = np.load(targets / "export" / vid / "frames.npy")
  return runner, runner.plan.make_ticks(vid, frames), vid


def _ctx(runner, state=None):
  """The loss's view of the initial state (or of `state`)."""
  from ttt_jax.engine.state import Context
  v = runner.plan.variables
  if state is not None:
    return Context(frozen=state.frozen, stats=state.stats, method_state=state.method_state, ema=state.ema,
                   anchor=state.anchor, hparams=state.hparams)
  return Context(frozen=v.frozen, stats=v.stats, method_state=v.method_state, ema=v.trainable,
                 anchor=v.trainable, hparams=runner.plan.hparams(6))


def _first(targets):
  vid = sorted(p.name for p in (targets / "export").iterdir())[0]
  return vid, np.load(targets / "export" / vid / "frames.npy")


def _row(data, i):
  return jax.tree.map(lambda x: np.asarray(x)[i], data)


def _batch(data, i):
  return jax.tree.map(lambda x: np.asarray(x)[i:i + 1], data)


def test_distillation_label_is_the_iss_prediction_where_no_object_gives_a_class(targets):
  """ditta/tta.py: `distill_label = iss_pred.clone(); distill_label[keep] = label[keep]`:
  every warm-up pixel is supervised, by the ISS argmax where no object gives a class."""
  runner, data, vid = _runner_and_clip(targets)
  probs = np.load(targets / "export" / vid / "iss_probs.npy")
  w = len(probs)
  cls, objs = data["cls"][:w], data["obj"][:w]
  assert (cls != 255).all()
  uncovered = objs == 255
  assert uncovered.any() and (~uncovered).any()
  np.testing.assert_array_equal(cls[uncovered], probs.argmax(-1)[uncovered])


def test_addon_value_is_frame_t_minus_1s_live_logits_with_gradient(targets):
  """The add-on's value (the reference's x[0, 0]) carries gradient into the plain
  classifier; detached (the earlier rule), the add-on term gives it none."""
  full, data, _ = _runner_and_clip(targets, "method.ditta.contrast=False")
  plain, _, _ = _runner_and_clip(targets, "method.ditta.contrast=False", "method.ditta.addon=False")
  batch = _batch(data, 1)                                   # frame 1: it has a previous frame
  key = jax.random.key(3)
  g = lambda r: jax.grad(lambda tr: r.plan.learner.loss_fn(tr, _ctx(r), batch, key)[0])(
      r.plan.variables.trainable)
  g_full, g_plain = g(full), g(plain)
  addon_part = (np.asarray(g_full["params"]["decode_head"]["classifier"]["kernel"])
                - np.asarray(g_plain["params"]["decode_head"]["classifier"]["kernel"]))
  assert np.abs(addon_part).max() > 1e-6


def test_momentum_follows_the_parameters_after_each_optimizer_step(targets):
  """ditta/tta.py updates the EMA after `optimizer.step()`: m' = 0.99 m + 0.01 w_new
  (the earlier rule used the weights before the step; lr 1e-2 makes the two differ by
  far more than the tolerance)."""
  from ttt_jax.engine.step import Tick
  runner, data, _ = _runner_and_clip(targets, "method.optimizer.lr=1e-2")
  state, _ = runner.start(*_first(targets), 0)
  m0 = jax.tree.map(np.asarray, state.ema)
  on = np.array(True)
  new, _ = jax.jit(runner._step)(state, Tick(data=_row(data, 1), push=on, adapt=on, predict=np.array(False)))
  want = jax.tree.map(lambda m, w: 0.99 * m + 0.01 * np.asarray(w), m0, new.trainable)
  for a, b in zip(jax.tree.leaves(new.ema), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-7)
  assert not trees_equal(new.trainable, runner.plan.variables.trainable)


def test_momentum_model_runs_in_train_mode_on_the_same_clip(targets):
  """The prototypes come from the momentum model in train mode on the clip (t-1, t):
  its BatchNorm uses the clip's statistics, so frame t-1 changes frame t's prototypes
  (in eval mode, as before, it could not)."""
  runner, data, _ = _runner_and_clip(targets)
  batch = _batch(data, 1)
  key = jax.random.key(0)
  protos = lambda b: np.asarray(runner.plan.learner.loss_fn(runner.plan.variables.trainable, _ctx(runner),
                                                            b, key)[1][1]["protos"])
  other = {**batch, "prev": np.asarray(data["frame"])[-1:]}   # another frame as t-1
  assert np.abs(protos(batch) - protos(other)).max() > 1e-4


def test_cotta_teacher_follows_the_student_after_the_step_then_restores(targets):
  """CoTTA's order: optimizer step, teacher EMA of the updated student (0.999), then
  stochastic restore of the student towards the source weights."""
  from ttt_jax.engine.step import Tick
  c = _config(targets, "cotta", "method.cotta.restore=1.0",   # restore everything: student = source
              "method.optimizer.lr=1.0",                       # a step the EMA's 0.001 share shows
              "method.cotta.scales=(1.0,)")                    # one scale: a 6x smaller program
  runner = _runner(c)
  vid, frames = _first(targets)
  state, data = runner.start(vid, frames, 0)
  on = np.array(True)
  new, _ = jax.jit(runner._step)(state, Tick(data=data[0], push=on, adapt=on, predict=np.array(False)))
  assert trees_equal(new.trainable, runner.plan.variables.trainable)          # fully restored
  moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in
              zip(jax.tree.leaves(new.ema), jax.tree.leaves(runner.plan.variables.trainable)))
  assert moved > 1e-4                                       # the EMA saw the updated student
