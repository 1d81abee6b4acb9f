"""Every notebook runs top to bottom at a tiny size (as a percent-format script)."""
import runpy
from pathlib import Path

import jupytext
import matplotlib
import pytest

# cast_stages runs in tests/test_cast.py, on the tiny CAST run that file makes anyway.
NOTEBOOKS = sorted(p for p in Path(__file__).resolve().parent.parent.joinpath("notebooks").glob("*.py")
                   if p.stem != "cast_stages")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch, tmp_path):
  nb = jupytext.read(path)
  assert any(c.cell_type == "markdown" for c in nb.cells) and any(c.cell_type == "code" for c in nb.cells)
  matplotlib.use("Agg")
  monkeypatch.setenv("TTT_NOTEBOOK_TINY", "1")
  monkeypatch.chdir(tmp_path)
  runpy.run_path(str(path), run_name="__main__")
