"""The demo's pipeline (two methods, the configs' tiny variant): table, JSON and plots."""
import json

import pytest

from ttt_jax import demo


def test_demo_quick_two_methods(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(demo, "METHODS", ("main_task", "online_ttt_mae"))
  monkeypatch.setattr(demo, "MAIN", ("main_task", "online_ttt_mae"))
  from ttt_jax.cli.config_io import load_config_file
  # the configs' own tiny variant instead of :quick
  monkeypatch.setattr(demo, "demo_config", lambda name, *, quick: load_config_file(f"{demo.config_path(name)}:tiny"))
  summary = demo.demo(tmp_path, quick=True)
  out = capsys.readouterr().out
  assert "online_ttt_mae" in out and "mIoU" in out
  res = json.loads((tmp_path / "results.json").read_text())
  assert set(res["methods"]) == {"main_task", "online_ttt_mae"}
  for m in res["methods"].values():
    assert 0 <= m["metrics"]["miou"] <= 1 and m["fps"] > 0
  assert (tmp_path / "per_frame_miou.png").stat().st_size > 1000
  assert (tmp_path / "strip.png").stat().st_size > 1000
  assert summary["methods"]["main_task"]["metrics"] == pytest.approx(
      res["methods"]["main_task"]["metrics"], nan_ok=True)
