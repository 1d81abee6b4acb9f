"""benchmarks/profiling.py: the FLOP counts and trace summaries the accelerator
sweep reports (`drivers.py --profile`)."""
import json

import jax
import jax.numpy as jnp
import pytest

from ttt_jax.cli.config_io import load_config_file
from ttt_jax.data.synthetic import VideoSpec, make_video
from ttt_jax.engine.state import Context
from ttt_jax.methods.defaults import video_config
from ttt_jax.methods.model_source import source_model
from ttt_jax.runner.run import make_runner

from tests.helpers import load_benchmark

profiling = load_benchmark("profiling")


def _runner(**model):
  c = video_config("mae")
  c.model.checkpoint, c.model.size = "random", "tiny"
  c.model.update(model)
  c.method.batch_size, c.method.window = 2, 4
  return make_runner(c)[0]


@pytest.fixture(scope="module")
def video_THWC():
  return make_video(VideoSpec(seed=1, num_frames=4, height=32, width=32))[0]


def test_a_sample_s_gradient_costs_a_few_forwards_and_batches_scale_linearly(video_THWC):
  r = _runner()
  f = profiling.frame_flops(r, video_THWC)
  # Forward plus backward (about twice the forward) of the masked-reconstruction
  # model: 3.16x one frame's prediction for this model, measured.
  ratio = f["loss_grad_per_sample"] / f["predict"]
  assert 2.5 < ratio < 4.0, f"loss gradient / prediction FLOPs = {ratio:.2f}, expected about 3"
  # drivers.py multiplies the one-sample count by the batch: check that it is linear.
  data_T = r.plan.make_ticks("v0", video_THWC)
  s = r.state_for(data_T, 4, 0)
  ctx = Context(frozen=s.frozen, stats=s.stats, method_state=s.method_state, ema=s.ema,
                anchor=s.anchor, hparams=s.hparams)
  vg = jax.jit(jax.value_and_grad(r.plan.learner.loss_fn, has_aux=True))
  two = vg.lower(s.trainable, ctx, jax.tree.map(lambda x: x[:2], data_T), jax.random.key(0))
  assert two.cost_analysis()["flops"] == pytest.approx(2 * f["loss_grad_per_sample"], rel=0.01)


def test_a_run_s_frame_flops_ignore_scanned_stages_and_micro_batches(video_THWC):
  def config(**method):
    c = video_config("mae")
    c.model.checkpoint, c.model.size = "random", "small"   # 'small': two blocks in stage 3
    c.method.batch_size, c.method.window = 2, 4
    c.method.update(method)
    return c
  plain_c = config()
  plain = profiling.config_frame_flops(plain_c, source_model(plain_c), video_THWC)
  assert plain["per_frame"] == plain["predict"] + 2 * plain["loss_grad_per_sample"]
  # XLA counts a loop's body once: counted as they run, scanned stages would undercount.
  split_c = config(micro_batches=2)
  split_c.model.scan_blocks = True
  scanned = source_model(split_c)
  assert scanned.cfg.scan_blocks
  assert profiling.frame_flops(make_runner(split_c, model=scanned)[0], video_THWC)["predict"] < plain["predict"]
  assert profiling.config_frame_flops(split_c, scanned, video_THWC) == plain
  none_c = config(mode="none")
  assert profiling.config_frame_flops(none_c, source_model(none_c), video_THWC)["per_frame"] == plain["predict"]


def _pretrain_cfg(batch, **model):
  c = load_config_file("configs/pretrain_synthetic.py")
  c.model.size, c.data.height, c.data.width, c.batch_size = "small", 32, 32, batch  # 'small': a scanned stage
  c.model.update(model)
  return c


def test_a_pretraining_step_s_flops_are_affine_in_the_batch_and_ignore_scanned_stages(tmp_path, monkeypatch):
  f = {b: profiling.pretrain_step_flops(_pretrain_cfg(b)) for b in (1, 2, 4)}
  per_sample, fixed = f[2] - f[1], 2 * f[1] - f[2]   # the fixed part: the optimizer, the clip
  assert f[4] == pytest.approx(f[2] + 2 * per_sample, rel=1e-4), f
  assert 0 < fixed < per_sample, f
  # Counted unscanned: a scanned stage's loop body would count one block.
  assert profiling.pretrain_step_flops(_pretrain_cfg(2, scan_blocks=True)) == f[2]
  # flops.py --pretrain: the whole run is `steps` such steps.
  flops = load_benchmark("flops", monkeypatch)
  path = "configs/pretrain_synthetic.py"
  out = flops.main(["--pretrain", path, "--budget-s", "100", "--json", str(tmp_path / "p.json")])
  (row,) = out["rows"]
  c = load_config_file(path)
  step = profiling.pretrain_step_flops(c)
  assert row["steps"] == c.steps and row["total_pflop"] == pytest.approx(step * c.steps / 1e15)
  assert row["rate_for_budget_tflops"] == pytest.approx(step * c.steps / 100 / 1e12)
  assert json.loads((tmp_path / "p.json").read_text())["rows"] == out["rows"]


def test_busy_time_is_the_union_of_intervals():
  assert profiling._busy_us([(5, 6), (0, 2), (1, 3), (1.5, 2.5)]) == 4  # noqa: SLF001


def test_a_trace_summary_names_the_ops_that_ran(tmp_path):
  f = jax.jit(lambda x: jnp.tanh(x @ x).sum())
  x = jnp.ones((256, 256))
  f(x).block_until_ready()
  s = profiling.profiled(lambda: [f(x).block_until_ready() for _ in range(5)], tmp_path)
  assert s["process"] and 0 < s["busy_ms"] <= s["span_ms"] and 0 < s["busy_fraction"] <= 1
  assert s["lines"] and all(line["busy_ms"] > 0 for line in s["lines"])
  assert max(o["count"] for line in s["lines"] for o in line["top_ops"]) >= 5, s["lines"]
  with pytest.raises(FileNotFoundError, match="trace.json.gz"):
    profiling.summarise_trace(tmp_path / "nothing")


def test_remat_benchmark_shows_the_recomputation_that_survived(tmp_path, monkeypatch):
  """benchmarks/remat.py on the shipped small model (stage 3 has two blocks, the only
  stage it scans): scanned and rematerialised, the compiled program recomputes (more
  dot and convolution ops) and plans fewer bytes per sample. Scanned cells only: on the
  CPU backend unrolled remat saves nothing (the module docstring says why), so the
  unrolled cells would cost four more compiles and show nothing to assert."""
  remat = load_benchmark("remat", monkeypatch)
  out = remat.main(["--sizes", "small", "--frames", "32x32", "--remats", "none", "blocks",
                    "--scans", "scanned", "--json", str(tmp_path / "remat.json")])
  assert (tmp_path / "remat.json").exists()
  rows = {(r["scan_blocks"], r["remat"]): r for r in out["rows"]}
  assert set(rows) == {(True, "none"), (True, "blocks")}, sorted(rows)
  assert all(r["per_sample_gb"] > 0 and r["fixed_gb"] > 0 for r in rows.values()), rows
  plain, recomputed = rows[True, "none"], rows[True, "blocks"]
  assert recomputed["matmuls"] > plain["matmuls"], (plain, recomputed)
  assert recomputed["per_sample_gb"] < plain["per_sample_gb"], (plain, recomputed)
