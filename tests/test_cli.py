"""`ttt-jax run` end to end: outputs, overrides, resume, bad input."""
import json

import numpy as np
import pytest

from ttt_jax.cli.main import main

REQUIRED = {"method", "dataset", "config", "versions", "frames", "fps", "metrics", "per_video",
            "skipped_updates"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("smoke")
  assert main(["run", "configs/smoke.py", "--out", str(out), "--quiet"]) == 0
  return out


def test_smoke_writes_results_and_predictions(smoke_run):
  res = json.loads((smoke_run / "results.json").read_text())
  assert REQUIRED <= res.keys()
  assert set(res["metrics"]) >= {"miou", "wiou", "mvc8", "mvc16"}
  assert res["frames"] == 12 and res["fps"] > 0
  assert res["config"]["engine"]["driver"] == "scan"
  files = sorted((smoke_run / "predictions").glob("*.npz"))
  assert len(files) == 2
  labels = np.load(files[0])["labels"]
  assert labels.shape == (6, 32, 32) and np.issubdtype(labels.dtype, np.integer)
  assert set(res["per_video"]) == {f.stem for f in files}


def test_resume_keeps_finished_videos(smoke_run, tmp_path):
  import shutil
  out = tmp_path / "resume"
  shutil.copytree(smoke_run, out)
  kept = sorted((out / "predictions").glob("*.npz"))
  kept[1].unlink()  # as if killed during the second video
  before = kept[0].stat().st_mtime_ns
  assert main(["run", "configs/smoke.py", "--out", str(out), "--quiet"]) == 0
  assert kept[0].stat().st_mtime_ns == before  # not recomputed
  a = json.loads((smoke_run / "results.json").read_text())["metrics"]
  b = json.loads((out / "results.json").read_text())["metrics"]
  assert a == pytest.approx(b, nan_ok=True)


@pytest.mark.parametrize("driver", ["stream", "sharded"])
def test_overrides_and_drivers_agree(smoke_run, tmp_path, driver):
  out = tmp_path / driver
  assert main(["run", "configs/smoke.py", f"engine.driver={driver}", "data.seed=1000", "--out", str(out),
               "--quiet"]) == 0
  res = json.loads((out / "results.json").read_text())
  assert res["config"]["engine"]["driver"] == driver
  for f in (smoke_run / "predictions").glob("*.npz"):
    np.testing.assert_array_equal(np.load(f)["labels"], np.load(out / "predictions" / f.name)["labels"])


def test_unknown_key_is_a_clear_error(tmp_path, capsys):
  assert main(["run", "configs/smoke.py", "data.sede=3", "--out", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert "unknown config key 'data.sede'" in err and "data.seed" in err
  assert main(["run", "configs/smoke.py", "data.seed=abc", "--out", str(tmp_path)]) == 2
  assert "expected a value of type int" in capsys.readouterr().err


def test_every_config_and_variant_loads_and_builds_its_method():
  """Each config file, and each of its named variants, names a registered method
  whose plan builds; the variants change what they say."""
  from pathlib import Path
  from ttt_jax.cli.config_io import load_config_file
  from ttt_jax.methods.defaults import VARIANTS
  from ttt_jax.methods.point_defaults import POINT_VARIANTS
  from ttt_jax.methods.registry import METHODS, POINT_METHODS
  from ttt_jax.runner.run import is_point_config, make_runner
  training = ("pretrain_synthetic", "pretrain_ttt_kd", "room_teacher", "cast")   # `ttt-jax pretrain` configs
  files = sorted(f for f in Path("configs").glob("*.py") if f.stem not in ("__init__",) + training)
  assert len(files) >= 19
  for f in files:
    c = load_config_file(f)
    if is_point_config(c):   # TTT-KD and the point baselines
      assert c.method.kind in POINT_METHODS, f
      demo, tiny = (load_config_file(f"{f}:{v}") for v in ("demo", "tiny"))
      assert demo.data.num_scenes == 8 and demo.data.seed == 1 and tiny.model.checkpoint == "random", f
      make_runner(tiny)
      with pytest.raises(ValueError, match="unknown config variant 'huge'"):
        load_config_file(f"{f}:huge")
      continue
    assert c.method.kind in METHODS, f
    assert {"driver", "seed", "max_window", "max_steps_per_frame", "scan_chunk"} <= set(c.engine), f
    if f.stem.startswith("ditta_") or f.stem == "smoke":
      with pytest.raises(ValueError, match="no variant"):
        load_config_file(f"{f}:demo")
      continue
    demo, quick, tiny = (load_config_file(f"{f}:{v}") for v in ("demo", "quick", "tiny"))
    assert (demo.data.seed, demo.data.num_videos, demo.data.num_frames, demo.method.batch_size) == (1000, 4, 48, 16)
    assert (quick.data.num_videos, quick.data.num_frames, quick.method.batch_size) == (2, 24, 8)
    assert tiny.model.checkpoint == "random" and tiny.data.height == 32
    make_runner(tiny)                                        # the method builds its plan
    with pytest.raises(ValueError, match="unknown config variant 'huge'"):
      load_config_file(f"{f}:huge")
  assert VARIANTS == ("", "demo", "quick", "tiny") and POINT_VARIANTS == ("", "demo", "tiny")


def test_demo_learning_rates_come_from_the_config_files():
  from ttt_jax.demo import demo_config
  lrs = {n: demo_config(n, quick=False).method.optimizer.lr for n in
         ("online_ttt_mae", "offline", "self_train", "tent", "main_task")}
  assert lrs == {"online_ttt_mae": 3e-3, "offline": 3e-3, "self_train": 1e-3, "tent": 1e-3, "main_task": 1e-4}


def test_ditta_config_end_to_end_through_the_commands(tmp_path):
  """`ttt-jax export`, `sam2-bridge targets` (flow), `ttt-jax run configs/ditta_w50.py`."""
  import subprocess
  import sys
  from tests.methods.test_ditta import TINY, TINY_DITTA
  over = [*TINY, *TINY_DITTA]
  exp, tgt = tmp_path / "export", tmp_path / "targets"
  assert main(["export", "configs/ditta_w50.py", *over, "--out", str(exp), "--quiet"]) == 0
  r = subprocess.run([sys.executable, "-m", "sam2_bridge.cli", "targets", "--export-dir", str(exp),
                      "--out-dir", str(tgt)], capture_output=True, text=True)
  assert r.returncode == 0, r.stderr
  assert len(list(tgt.glob("*.npz"))) == 2
  out = tmp_path / "run"
  assert main(["run", "configs/ditta_w50.py", *over, f"method.targets.dir={tgt}", "--out", str(out),
               "--quiet"]) == 0
  res = json.loads((out / "results.json").read_text())
  assert res["method"] == "ditta" and res["evaluated"] == "frames after the warm-up"
  assert res["skipped_updates"] == 0 and np.isfinite(res["metrics"]["miou"])
