"""TTT-KD through the method contract: per-scene adaptation of the backbone only with a
reset between scenes, TTT-KD-O's stride, the baselines, outputs, drivers and bad input."""
import json

import jax
import numpy as np
import pytest

from sam2_bridge import cache_schema
from ttt_jax.checkpoint.model_io import save_model
from ttt_jax.cli.config_io import load_config_file
from ttt_jax.data import rooms
from ttt_jax.methods.kd_targets import Teacher, scene_features
from ttt_jax.methods.model_source import source_model
from ttt_jax.methods.ttt_kd import TTTKD, stream_schedule
from ttt_jax.models.room_teacher import RoomTeacher, TeacherConfig
from ttt_jax.runner.programs import ProgramCache, Runner


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
  """A random small stand-in teacher (its features need no training to be targets)."""
  cfg = TeacherConfig(widths=(8, 8, 8), feature_dim=8)
  v = RoomTeacher(cfg).init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.uint8))
  return save_model(tmp_path_factory.mktemp("teacher") / "model", v, cfg, {"note": "random"})


def _config(name, teacher_dir, **over):
  c = load_config_file(f"configs/{name}.py:tiny")
  c.method.ttt_kd.teacher_path = str(teacher_dir)
  c.model.teacher_dim = 8
  for k, v in over.items():
    node, key = k.rsplit(".", 1) if "." in k else ("", k)
    target = c
    for part in filter(None, node.split(".")):
      target = target[part]
    target[key] = v
  return c


def _scenes(n=2, dataset="office"):
  return [(s.points.scene_id, s) for s in rooms.iter_scenes(dataset, "test", seed=1, num_scenes=n, size="tiny")]


def test_per_scene_ttt_kd_moves_only_the_backbone_and_resets_between_scenes(teacher_dir):
  c = _config("ttt_kd", teacher_dir)
  model = source_model(c)
  programs = ProgramCache()
  runner = Runner(TTTKD().build(c, model), scan_chunk=1, programs=programs)
  (ida, a), (idb, b) = _scenes()
  lab_b_after_a = None
  for i, (sid, s) in enumerate(((ida, a), (idb, b))):
    lab, stats = runner.run_one(sid, s, i)
    assert lab.shape == (1, c.engine.num_points) and stats["adapted"].tolist() == [True]
    assert stats["drift"]["backbone"] > 0 and set(stats["drift"]) == {"backbone"}
    lab_b_after_a = lab
  # Reset: scene b adapts from the source weights whatever ran before it (its KD steps
  # are deterministic, so a fresh runner on b alone predicts the same).
  alone, _ = Runner(TTTKD().build(c, model), scan_chunk=1, programs=programs).run_one(idb, b, 1)
  np.testing.assert_array_equal(alone, lab_b_after_a)


def test_the_distillation_loss_falls_over_a_scene_s_steps(teacher_dir):
  """TTT-KD-O at stride 1 carries the weights: on one scene seen three times, each
  step's distillation loss is below the last (BatchNorm on the source statistics; the
  other tests run the default, the scene's)."""
  c = _config("ttt_kd_o", teacher_dir, **{"method.stride": 1, "method.optimizer.lr": 3e-3,
                                          "method.ttt_kd.bn": "source"})
  (sid, s), = _scenes(1)
  _, stats = Runner(TTTKD().build(c, source_model(c)), scan_chunk=1).run_one("stream", [(sid, s)] * 3, 0)
  loss = stats["loss"]
  assert stats["adapted"].all() and loss[0] > loss[1] > loss[2], loss


def test_ttt_kd_o_steps_on_every_s_th_scene():
  s = stream_schedule(7, 3)
  assert s.adapt.tolist() == [True, False, False, True, False, False, True]
  assert s.predict.all() and s.push.all()


def test_the_baselines_use_the_scene_s_statistics(teacher_dir):
  """Tent trains the backbone's norm affines on the scene's statistics; norm adapt only
  recomputes them: both predict differently from the source model. (A model with
  stochastic depth: the statistics pass runs without it.)"""
  (sid, s), = _scenes(1, "home")
  src, _ = Runner(TTTKD().build(_config("point_source", teacher_dir), source_model(_config("point_source", teacher_dir))),
                  scan_chunk=1).run_one(sid, s, 0)
  for name, moved in (("point_tent", {"backbone"}), ("point_norm", set())):
    c = _config(name, teacher_dir, **{"model.drop_path": 0.1})
    lab, stats = Runner(TTTKD().build(c, source_model(c)), scan_chunk=1).run_one(sid, s, 0)
    assert not np.array_equal(lab, src), name
    assert set(stats["drift"]) == moved, name


def test_run_writes_each_scene_s_labels_resumes_and_the_mesh_predicts_as_the_scan(teacher_dir, tmp_path):
  from ttt_jax.runner.run import run
  c = _config("ttt_kd", teacher_dir)
  res = run(c, tmp_path / "scan", progress=False)
  saved = json.loads((tmp_path / "scan" / "results.json").read_text())
  assert saved["scenes"] == 2 and 0 <= saved["metrics"]["miou"] <= 1 and len(saved["iou_per_class"]) == 9
  for sid, s in _scenes():
    z = np.load(tmp_path / "scan" / "predictions" / f"{sid}.npz")
    assert z["labels"].shape == s.points.segment_N.shape      # the scene's points, no padding
  stamp = (tmp_path / "scan" / "predictions" / f"{sid}.npz").stat().st_mtime_ns
  again = run(c, tmp_path / "scan", progress=False)            # finished scenes are kept
  assert (tmp_path / "scan" / "predictions" / f"{sid}.npz").stat().st_mtime_ns == stamp
  assert again["metrics"] == res["metrics"]
  labels = lambda d: [np.load(p)["labels"] for p in sorted((tmp_path / d / "predictions").glob("*.npz"))]
  # 'sharded' vmaps the scenes over 4 simulated devices (padded to a multiple of 4); the
  # stream driver's equality with the scan is the engine's (tests/engine/test_drivers.py).
  for driver in ("sharded",):
    run(_config("ttt_kd", teacher_dir, **{"engine.driver": driver}), tmp_path / driver, progress=False)
    for a, b in zip(labels("scan"), labels(driver)):
      np.testing.assert_array_equal(a, b, err_msg=driver)


def test_bad_scenes_fail_early_naming_the_scene_or_file(teacher_dir, tmp_path, monkeypatch):
  c = _config("ttt_kd", teacher_dir)
  ticks = TTTKD().build(c, source_model(c)).make_ticks
  (sid, s), (sid2, s2) = _scenes()
  p = s.points
  nan = p.coord_N3.copy()
  nan[5, 1] = np.nan
  cases = {
      "NaN or infinite": (p.__class__(sid, nan, p.color_N3, p.normal_N3, p.segment_N), s.views),
      "N > 0": (p.__class__(sid, nan[:0], p.color_N3[:0], p.normal_N3[:0], p.segment_N[:0]), s.views),
      "more than the padded size": (p.__class__(sid, np.tile(p.coord_N3, (3, 1)), np.tile(p.color_N3, (3, 1)),
                                                np.tile(p.normal_N3, (3, 1)), np.tile(p.segment_N, 3)), s.views),
      "one per pose": (p, s.views.__class__(s.views.color_VHW3[:-1], *[getattr(s.views, f) for f in
                                            ("depth_VhW", "pose_V44", "color_K_33", "depth_K_33", "frame_ids")])),
      "not a rigid": (p, s.views.__class__(s.views.color_VHW3, s.views.depth_VhW, s.views.pose_V44 * 2,
                                           s.views.color_K_33, s.views.depth_K_33, s.views.frame_ids)),
      "do not match their intrinsics": (p, s.views.__class__(s.views.color_VHW3[:, :8, :8], s.views.depth_VhW,
                                                             s.views.pose_V44, s.views.color_K_33,
                                                             s.views.depth_K_33, s.views.frame_ids)),
  }
  for message, (pts, views) in cases.items():
    with pytest.raises(ValueError, match=message) as e:
      ticks(sid, rooms.RoomScene(pts, views, "office"))
    assert sid in str(e.value)
  # A feature cache of another scene, or of another teacher, is refused naming the file.
  t = Teacher(teacher_dir)
  scene_features(sid, s.views, teacher="room_teacher", features_dir=tmp_path, stand_in=t)
  (tmp_path / f"{sid}.npz").rename(tmp_path / f"{sid2}.npz")
  with pytest.raises(cache_schema.CacheMismatch, match=f"{sid2}.npz was built from another video"):
    scene_features(sid2, s2.views, teacher="room_teacher", features_dir=tmp_path, stand_in=t)
  other = Teacher(teacher_dir)
  other.digest = "0" * 64
  scene_features(sid, s.views, teacher="room_teacher", features_dir=tmp_path, stand_in=t)
  with pytest.raises(cache_schema.CacheMismatch, match="another room_teacher checkpoint"):
    scene_features(sid, s.views, teacher="room_teacher", features_dir=tmp_path, stand_in=other)
  # A run checks every scene before running any: nothing is written for the good one.
  from ttt_jax.runner import run_scenes
  bad = rooms.RoomScene(p.__class__(sid2, nan, p.color_N3, p.normal_N3, p.segment_N), s2.views, "office")
  monkeypatch.setattr(run_scenes, "load_scenes", lambda d: iter([(sid, s), (sid2, bad)]))
  with pytest.raises(ValueError, match=f"scene {sid2}: 1 points have NaN"):
    run_scenes.run_scenes(c, tmp_path / "run", progress=False)
  assert not list((tmp_path / "run" / "predictions").iterdir())


def test_bfloat16_ttt_kd_adapts_and_predicts_as_float32(teacher_dir):
  """`model.compute_dtype=bfloat16` on the point model: finite losses, a float32 state
  (the run's drift is measured on it) and the labels of float32 on nearly every point."""
  (sid, s), = _scenes(1)
  labels = {}
  for dt in ("float32", "bfloat16"):
    c = _config("ttt_kd", teacher_dir, **{"model.compute_dtype": dt})
    runner = Runner(TTTKD().build(c, source_model(c)), scan_chunk=1)
    lab, stats = runner.run_one(sid, s, 0)
    assert np.isfinite(stats["loss"]).all() and stats["drift"]["backbone"] > 0, dt
    valid = np.asarray(lab) >= 0
    labels[dt] = np.asarray(lab)[valid]
  agree = float(np.mean(labels["float32"] == labels["bfloat16"]))
  print(f"point model bfloat16 / float32 label agreement: {agree:.4f}")
  assert agree >= 0.95, f"bfloat16 point labels agree with float32 on {agree:.4f} of points"
