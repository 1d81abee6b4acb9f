"""Every method config builds and runs on the engine (tiny model, short video)."""
from pathlib import Path

import numpy as np
import pytest

from ttt_jax.cli.config_io import load_config_file
from ttt_jax.engine import drivers
from ttt_jax.methods.model_source import load_source_model
from ttt_jax.methods.video_run import VideoRunner
from tests.helpers import video

CONFIGS = sorted(p.stem for p in Path("configs").glob("*.py")
                 if p.stem not in ("smoke", "pretrain_synthetic") and not p.stem.startswith("ditta_"))
DITTA_CONFIGS = sorted(p.stem for p in Path("configs").glob("ditta_*.py"))


# The MAE memory variants differ from online_ttt_mae only in StepConfig flags,
# whose semantics tests/engine covers; they are built here, the rest also run.
RUN = {"main_task", "online_ttt_mae", "offline", "norm_adapt", "tent", "self_train"}


@pytest.mark.parametrize("name", CONFIGS)
def test_method_config_runs(name):
  c = load_config_file(f"configs/{name}.py")
  c.model.checkpoint, c.model.size = "random", "tiny"
  c.method.batch_size, c.method.window = 2, min(c.method.window, 3)
  if c.method.mode == "offline":
    c.method.offline_iters, c.method.window = 3, 4
  v, mc, _ = load_source_model(c.model, c.data.num_classes)
  runner = VideoRunner(c, v, mc)
  if name not in RUN:
    assert runner.schedule(4).adapt.all()
    return
  frames, _ = video(0, t=4)
  labels, stats = runner.run_one(frames, 0)
  assert labels.shape == (4, 32, 32) and labels.min() >= 0 and labels.max() < c.data.num_classes
  assert stats["skipped"] == 0


@pytest.mark.parametrize("name", DITTA_CONFIGS)
def test_ditta_protocol_configs_build(name, tmp_path):
  """DiTTA's protocol: warm-up then freeze, scored after the warm-up (runs: test_ditta.py, test_cli.py)."""
  c = load_config_file(f"configs/{name}.py")
  c.model.checkpoint, c.model.size = "random", "tiny"
  assert c.method.eval_after_warmup
  v, mc, _ = load_source_model(c.model, c.data.num_classes)
  runner = VideoRunner(c, v, mc)
  s = runner.schedule(20)
  if c.method.objective == "ditta":
    w = max(int(20 * c.method.warmup_fraction), 1)
    assert len(s) == 5 * w + 20 and s.adapt.sum() == 5 * w and s.predict[-20:].all()
  else:
    assert len(s) == 20 and s.predict.all()


def test_trainable_subsets():
  from ttt_jax.checkpoint.model_io import init_variables
  from ttt_jax.engine.state import split_params
  from ttt_jax.methods.video_ttt import trainable_predicate
  from ttt_jax.models.segformer import segformer_config
  import jax
  v = init_variables(segformer_config("tiny", 3), jax.random.key(0))
  n = lambda t: len(jax.tree.leaves(t))
  tr_all, fr_all = split_params(v, trainable_predicate("all"))
  assert "batch_stats" not in tr_all and n(tr_all) == n(v["params"])
  tr_norm, _ = split_params(v, trainable_predicate("norm"))
  from flax import traverse_util
  keys = traverse_util.flatten_dict(tr_norm).keys()
  assert keys and all(k[-1] in ("scale", "bias") and any("norm" in p for p in k) for k in keys)
  tr_dec, _ = split_params(v, trainable_predicate("decode_head"))
  assert set(tr_dec["params"]) == {"decode_head"}
  tr_none, fr_none = split_params(v, trainable_predicate("none"))
  assert tr_none == {} and n(fr_none) == n(v)
  with pytest.raises(ValueError, match="unknown trainable subset"):
    trainable_predicate("some")


def test_norm_adapt_changes_only_batch_stats():
  from tests.helpers import tiny_runner
  runner, _ = tiny_runner(objective="norm", mode="implicit", trainable="none")
  frames, _ = video(0, t=3)
  st = runner.state_for(frames[0], 0)
  before = np.asarray(runner.frozen["batch_stats"]["decode_head"]["batch_norm"]["mean"])
  state, _ = runner._scan(st, drivers.ticks_for(frames, runner.schedule(3)))
  after = np.asarray(state.frozen["batch_stats"]["decode_head"]["batch_norm"]["mean"])
  assert not np.allclose(before, after)
  np.testing.assert_array_equal(np.asarray(state.frozen["params"]["encoder"]["norm0"]["scale"]),
                                np.asarray(runner.frozen["params"]["encoder"]["norm0"]["scale"]))


def test_class_balance_reset_always_firing_equals_reset_mode():
  from tests.helpers import tiny_runner
  frames, _ = video(0, t=4)
  always, _ = tiny_runner(mode="implicit", window=1, class_balance_reset=True, cb_tolerance=-1)
  labels, stats = always.run_one(frames, 0)
  assert stats["resets"] == 4  # |drift| > -1 holds on every frame
  reset, _ = tiny_runner(mode="reset", window=1)
  np.testing.assert_array_equal(labels, reset.run_one(frames, 0)[0])
