"""Files written whole or not at all: a killed run never leaves half a file."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np


def atomic_write_bytes(path, data: bytes) -> Path:
  """Writes `data` to a temporary sibling, then renames it over `path`."""
  path = Path(path)
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  tmp.write_bytes(data)
  os.replace(tmp, path)
  return path


def write_json(path, obj) -> Path:
  """Writes `obj` as indented JSON, atomically, creating parent folders."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  return atomic_write_bytes(path, json.dumps(obj, indent=1, default=bool).encode())


def save_npz(path, **arrays) -> Path:
  """`np.savez_compressed`, atomically."""
  buf = io.BytesIO()
  np.savez_compressed(buf, **arrays)
  return atomic_write_bytes(path, buf.getvalue())


def save_npy(path, a: np.ndarray) -> Path:
  """`np.save`, atomically."""
  buf = io.BytesIO()
  np.save(buf, a)
  return atomic_write_bytes(path, buf.getvalue())
