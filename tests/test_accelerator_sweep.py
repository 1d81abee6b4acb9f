"""benchmarks/accelerator.py end to end on one tiny cell: what a device lease runs
first (README, "Memory and accelerators") must not be found broken on the device."""
import json

import jax
import pytest

from tests.helpers import load_benchmark

CELL = "tiny-adapt-scan-mb2"   # online TTT-MAE, scan driver, batch 4 in 2 micro-batches


def test_a_cell_runs_in_its_own_process_records_its_precision_and_a_rerun_skips_it(tmp_path, monkeypatch):
  acc = load_benchmark("accelerator", monkeypatch)
  out = tmp_path / "acc"
  argv = ["--quick", "--only", CELL, "--profile", "--matmul-precision", "highest", "--out", str(out)]
  done = acc.sweep(argv)
  res = done[CELL]
  assert "error" not in res, res.get("log_tail")
  (row,) = res["rows"]
  assert row["step"] == "adapting" and row["scan_fps"] > 0 and row["scan_compile_s"] > 0, row
  assert (res["batch"], res["micro_batches"]) == (4, 2)
  # The FLOP count and a traced run (or why tracing failed) come with the timings.
  assert row["flops_per_frame"] > 0 and row["scan_tflops_per_s"] > 0, row
  assert "profile" in row or "profile_error" in row, row
  # The cell's process ran at the asked precision; this one was left as it was.
  assert res["matmul_precision"] == "highest" and res["cell"]["matmul_precision"] == "highest"
  assert jax.config.jax_default_matmul_precision is None
  assert json.loads((out / "accelerator.json").read_text())[CELL]["rows"] == res["rows"]

  # A rerun resumes: the finished cell is not started again.
  def no_process(*args, **kwargs):
    raise AssertionError(f"a finished cell was started again: {args}")
  monkeypatch.setattr(acc.subprocess, "Popen", no_process)
  assert acc.sweep(argv)[CELL]["rows"] == res["rows"]
  # Another precision into the same folder would mix figures under one name: refused.
  with pytest.raises(SystemExit, match=f"{CELL}.*another --matmul-precision"):
    acc.sweep(["--quick", "--only", CELL, "--out", str(out)])
  with pytest.raises(SystemExit, match="--matmul-precision 'float31'.*tensorfloat32"):
    acc.sweep(["--quick", "--matmul-precision", "float31", "--out", str(tmp_path / "other")])
  assert not (tmp_path / "other").exists()
