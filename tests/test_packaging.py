"""The package as installed: every subpackage listed, and the configs the demo
reads shipped as package data (so `pip install .` then `ttt-jax demo` works)."""
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_lists_every_package():
  listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
  found = {".".join(p.parent.relative_to(ROOT).parts) for p in ROOT.glob("ttt_jax/**/__init__.py")}
  found |= {"sam2_bridge", "ttt_jax.configs"}
  assert found == listed, f"add to or remove from pyproject.toml: {sorted(found ^ listed)}"


def test_wheel_carries_the_demo_configs_and_the_models(tmp_path):
  r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                      "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
  assert r.returncode == 0, r.stderr
  names = zipfile.ZipFile(next(tmp_path.glob("ttt_jax-*.whl"))).namelist()
  from ttt_jax.demo import METHODS
  for m in METHODS:
    assert f"ttt_jax/configs/{m}.py" in names, m
  assert any(n.startswith("ttt_jax/assets/ysegformer_small_synthetic/") for n in names)
  assert not any(n.startswith("configs/") for n in names)     # no stray top-level package
