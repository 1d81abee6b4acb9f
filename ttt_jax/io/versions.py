"""Version stamps for results and caches."""
from __future__ import annotations

import importlib.metadata
import platform

VERSIONED = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "numpy", "ttt-jax")


def installed(packages) -> dict:
  """Installed version of each distribution (None if absent)."""
  def version(p):
    try:
      return importlib.metadata.version(p)
    except importlib.metadata.PackageNotFoundError:
      return None
  return {p: version(p) for p in packages}


def versions() -> dict:
  """Python and the libraries a result depends on."""
  return {"python": platform.python_version(), **installed(VERSIONED)}
