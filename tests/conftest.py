"""Test set-up: 4 simulated CPU devices and a shared persistent compilation cache."""
import os
from pathlib import Path

# Not XLA_FLAGS=--xla_backend_optimization_level=0: compilation dominates this suite and
# -O0 compiles 25 to 40% faster (the suite took 14.6 min with it and the CAST test trims,
# 24.7 min with neither), but the tests must check the compiler users run, and at -O0
# DiTTA's sharded (lax.map) program differs from its scan in 5 of 6144 pixels.
import jax

jax.config.update("jax_num_cpu_devices", 4)
# XLA:CPU compilation dominates the suite; identical programs compiled by several
# tests (or xdist workers) are compiled once.
_cache = Path(__file__).resolve().parent.parent / ".pytest_cache" / "xla"
_cache.mkdir(parents=True, exist_ok=True)
jax.config.update("jax_compilation_cache_dir", str(_cache))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
os.environ.setdefault("TTT_JAX_TEST", "1")
# Implicit rank promotion hides shape bugs: every test runs with it refused.
jax.config.update("jax_numpy_rank_promotion", "raise")

# The longest test files first (measured: `pytest -n 2 tests --durations=60`, summed per
# file). With `--dist loadfile` a file runs whole on one worker, in collection order as
# workers free up; starting with the longest keeps both workers busy to the end instead
# of one finishing a long file alone.
LONGEST_FIRST = (
    "tests/test_pretrain.py", "tests/methods/test_ditta.py", "tests/methods/test_methods.py",
    "tests/test_cast.py", "tests/methods/test_ttt_kd.py", "tests/engine/test_drivers.py",
    "tests/methods/test_video_ttt_reference.py", "tests/methods/test_torch_parity.py",
    "tests/models/test_segformer.py", "tests/models/test_ptv3.py", "tests/test_notebooks.py", "tests/test_cli.py",
)


def pytest_collection_modifyitems(session, config, items):
  rank = {f: i for i, f in enumerate(LONGEST_FIRST)}
  root = Path(__file__).resolve().parent.parent
  key = lambda item: rank.get(Path(item.fspath).resolve().relative_to(root).as_posix(), len(rank))
  items[:] = sorted(items, key=key)   # stable: the order within a file is kept
