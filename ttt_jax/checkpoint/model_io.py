"""Model checkpoints: Flax variables in an orbax checkpoint plus the model config.

Layout of a model directory:

    DIR/model.json        {"arch": "segformer", "config": {...}, "meta": {...}}
    DIR/variables/        orbax StandardCheckpointer (params + batch_stats)

Architectures (`arch`): 'segformer' (`SegFormerConfig`), 'room_teacher' (TTT-KD's
stand-in 2D teacher), 'point_seg' (TTT-KD's point model) and 'instance_seg' (CAST's
ViT + DPT + Mask2Former model).

Restoring builds an abstract target from the config (`jax.eval_shape` of the
model's init), so a checkpoint that does not match its config is refused with a
clear error instead of being loaded half.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from ttt_jax.models.segformer import SegFormerConfig, YSegFormer


def init_variables(cfg: SegFormerConfig, key: jax.Array, image_hw=(64, 64)):
  """Random variables of a Y-SegFormer (`params`, `batch_stats`)."""
  return _init(cfg, key, tuple(image_hw))


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init(cfg, key, image_hw):
  # Jitted: run op by op, initialisation compiles hundreds of small programs.
  x = jnp.zeros((1, *image_hw, cfg.num_channels), jnp.float32)
  return YSegFormer(cfg).init(key, x)


def abstract_variables(cfg: SegFormerConfig):
  return jax.eval_shape(lambda: init_variables(cfg, jax.random.key(0)))


def _arches() -> dict:
  """arch name -> (config type, `cfg -> abstract variables`)."""
  from ttt_jax.models import instance_seg, point_seg, room_teacher
  return {"segformer": (SegFormerConfig, abstract_variables),
          "instance_seg": (instance_seg.InstanceSegConfig, instance_seg.abstract_variables),
          "room_teacher": (room_teacher.TeacherConfig, room_teacher.abstract_variables),
          "point_seg": (point_seg.PointSegConfig, point_seg.abstract_variables)}


def _arch_of(cfg) -> str:
  for name, (kind, _) in _arches().items():
    if isinstance(cfg, kind):
      return name
  raise ValueError(f"no checkpoint architecture for a config of type {type(cfg).__name__}")


def save_model(directory, variables, cfg, meta: dict | None = None) -> Path:
  """Writes `variables` and `cfg` under `directory` (replaced whole, atomically)."""
  d = Path(directory).absolute()
  tmp = d.with_name(d.name + ".tmp-write")
  if tmp.exists():
    shutil.rmtree(tmp)
  tmp.mkdir(parents=True)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(tmp / "variables", jax.tree.map(jnp.asarray, variables))
  (tmp / "model.json").write_text(json.dumps(
      {"arch": _arch_of(cfg), "config": cfg.to_dict(), "meta": meta or {}}, indent=1))
  if d.exists():
    shutil.rmtree(d)
  os.replace(tmp, d)
  return d


def load_config(directory, arch: str | None = None) -> tuple:
  """`(cfg, meta)` of a model directory; `arch` (if given) must be the one it holds."""
  d = Path(directory)
  f = d / "model.json"
  if not f.is_file():
    raise FileNotFoundError(f"no model checkpoint at {d}: {f} is missing")
  spec = json.loads(f.read_text())
  saved = spec.get("arch", "segformer")
  arches = _arches()
  if saved not in arches:
    raise ValueError(f"{f}: unknown architecture {saved!r}; expected one of {sorted(arches)}")
  if arch is not None and saved != arch:
    raise ValueError(f"{f} holds a {saved!r} model; a {arch!r} model was expected")
  kind = arches[saved][0]
  if hasattr(kind, "from_dict"):
    return kind.from_dict(spec["config"]), spec.get("meta", {})
  c = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["config"].items()}
  return kind(**c), spec.get("meta", {})


def _check_saved_shapes(path, target, config_file):
  """Compares the checkpoint's stored shapes with the config's before reading any array."""
  if not path.exists():
    raise FileNotFoundError(f"model checkpoint {path} is missing")
  with ocp.StandardCheckpointer() as ckptr:
    tree = ckptr.metadata(path).item_metadata.tree
  saved = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(tree).items()}
  want = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(target).items()}
  if saved != want:
    diff = sorted(set(saved.items()) ^ set(want.items()))[:3]
    raise ValueError(f"checkpoint {path} does not match its config {config_file}: differing "
                     f"(path, shape) entries {diff}")


def load_model(directory, arch: str | None = None):
  """Returns `(variables, cfg, meta)` from a directory written by `save_model`
  (`arch`, if given, must be the architecture it holds)."""
  d = Path(directory).absolute()
  cfg, meta = load_config(d, arch)
  target = _arches()[_arch_of(cfg)][1](cfg)
  _check_saved_shapes(d / "variables", target, d / "model.json")
  try:
    with ocp.StandardCheckpointer() as ckptr:
      variables = ckptr.restore(d / "variables", target)
  except (ValueError, KeyError, FileNotFoundError) as e:
    raise ValueError(f"checkpoint {d / 'variables'} does not match its config {d / 'model.json'}: {e}") from e
  return variables, cfg, meta


def variables_digest(variables) -> str:
  """sha256 of a variables pytree: every leaf's path, shape, dtype and bytes.

  The identity of a model's weights, the same on every backend (it reads the
  stored values, not anything computed from them); DiTTA target caches record
  the digest of the model whose probabilities prompted them.
  """
  h = hashlib.sha256()
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(variables)[0],
                           key=lambda kv: jax.tree_util.keystr(kv[0])):
    a = np.ascontiguousarray(jax.device_get(leaf))
    h.update(f"{jax.tree_util.keystr(path)}|{a.shape}|{a.dtype}".encode())
    h.update(a.tobytes())
  return h.hexdigest()
