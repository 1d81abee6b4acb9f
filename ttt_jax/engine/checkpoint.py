"""Save and resume a stream's TTT state with orbax (at any frame).

Restoring needs an abstract target: pass the freshly initialised state of the
same run (`like`); its structure, shapes and dtypes are checked first, so a state
saved for another model or window is refused with a clear error.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from ttt_jax.engine.state import TTTState, check_state_matches


def _to_saveable(state: TTTState):
  # Typed PRNG keys are stored as their raw key data.
  return state.replace(key=jax.random.key_data(state.key))


def _signature(tree) -> list[list[str]]:
  """[path, shape, dtype] of every leaf: what a restore target must match."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [[jax.tree_util.keystr(p), str(tuple(x.shape)), str(x.dtype)] for p, x in flat]


def save_state(directory, state: TTTState, *, frame_index: int) -> Path:
  """Writes `state` (after `frame_index` frames) to `directory`, atomically."""
  d = Path(directory).absolute()
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(d / "state", _to_saveable(state), force=True)
  tmp = d / ".meta.json.tmp"
  tmp.write_text(json.dumps({"frame_index": int(frame_index),
                             "signature": _signature(_to_saveable(state))}))
  tmp.replace(d / "meta.json")
  return d


def restore_state(directory, like: TTTState) -> tuple[TTTState, int]:
  """Returns `(state, frames_done)` saved under `directory`, shaped like `like`."""
  d = Path(directory).absolute()
  if not (d / "meta.json").is_file() or not (d / "state").exists():
    raise FileNotFoundError(f"no saved stream state at {d} (expected {d / 'state'} and meta.json)")
  meta = json.loads((d / "meta.json").read_text())
  want = _signature(_to_saveable(like))
  if meta["signature"] != want:
    diff = next((f"{a[0]}: saved {a[1]} {a[2]}, expected {b[1]} {b[2]}"
                 for a, b in zip(meta["signature"], want) if a != b),
                f"{len(meta['signature'])} leaves saved, {len(want)} expected")
    raise ValueError(f"saved state at {d} does not match the model/run it is restored into ({diff})")
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_saveable(like))
  try:
    with ocp.StandardCheckpointer() as ckptr:
      saved = ckptr.restore(d / "state", target)
  except (ValueError, KeyError) as e:
    raise ValueError(f"saved state at {d} does not match the model/run it is restored into: {e}") from e
  state = saved.replace(key=jax.random.wrap_key_data(saved.key, impl=jax.random.key_impl(like.key)))
  check_state_matches(state, like, f"saved state at {d}")
  return state, meta["frame_index"]
