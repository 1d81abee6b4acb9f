"""The cache both halves share: versioned, numpy-only (imports neither torch nor jax).

A cache file is one `.npz` per video and kind, written atomically:

    kind "masks"     masks      bool    T x N x H x W   propagated object masks
                     object_ids int32   N
                     prompt_frames int32 N            frame each object was first prompted on
                     class_scores float32 N x C       optional
                     prompt_points float32 N x 2      optional, (x, y) pixels
                     prompt_classes int32 N           optional, the class that placed the prompt
                     prompt_scores float32 N          optional, its peak reliability
    kind "features"  features   float16 T x h x w x C  teacher patch features
    kind "box_masks" masks      bool    N x G x H x W   SAM2 masks of G boxes per image (CAST)
                     boxes      float32 N x G x 4       (x0, y0, x1, y1) pixels, NaN = no box

plus `__meta__`: UTF-8 JSON bytes (uint8) with the schema version, the kind, the
digest of the source frames, the teacher's name and checkpoint digest, the
parameters and library versions. No object arrays (they would need pickle).
`read_cache` refuses a cache whose digests do not match the video or teacher it is
asked for, naming both.

DiTTA's masks are prompted from an image model's (ISS) probabilities, so a masks
cache also records that model's weights digest (`params["iss_digest"]`) when the
probabilities came with one: `ttt-jax export` writes it beside them as
`iss_model.sha256`, and a DiTTA run with another model refuses the cache.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
KINDS = {
    "masks": {"masks": (np.bool_, 4), "object_ids": (np.int32, 1), "prompt_frames": (np.int32, 1)},
    "features": {"features": (np.float16, 4)},
    "box_masks": {"masks": (np.bool_, 4), "boxes": (np.float32, 3)},
}
OPTIONAL = {"masks": {"class_scores": (np.float32, 2), "prompt_points": (np.float32, 2),
                     "prompt_classes": (np.int32, 1), "prompt_scores": (np.float32, 1)},
            "features": {}, "box_masks": {}}
ISS_DIGEST_FILE = "iss_model.sha256"  # beside iss_probs.npy: the weights digest of its model


class CacheMismatch(ValueError):
  """A cache that does not belong to the video or teacher it was asked for."""


def video_digest(frames_THWC: np.ndarray) -> str:
  """sha256 of a video's frames (shape, dtype and bytes)."""
  a = np.ascontiguousarray(frames_THWC)
  h = hashlib.sha256(f"{a.shape}|{a.dtype}".encode())
  h.update(a.tobytes())
  return h.hexdigest()


def read_iss_digest(probs_path) -> str | None:
  """The ISS model digest written beside a probabilities file, or None if there is none."""
  f = Path(probs_path).with_name(ISS_DIGEST_FILE)
  return f.read_text().strip() if f.is_file() else None


def library_versions(packages) -> dict:
  """Installed version of each distribution (None if absent), for cache and results metadata."""
  out = {}
  for p in packages:
    try:
      out[p] = importlib.metadata.version(p)
    except importlib.metadata.PackageNotFoundError:
      out[p] = None
  return out


def checkpoint_digest(path) -> str:
  """sha256 over a checkpoint file, or over a folder's files (names and bytes, sorted)."""
  p = Path(path)
  if not p.exists():
    raise FileNotFoundError(f"teacher checkpoint {p} does not exist")
  h = hashlib.sha256()
  files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
  for f in files:
    h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
    with open(f, "rb") as fh:
      for chunk in iter(lambda: fh.read(1 << 20), b""):
        h.update(chunk)
  return h.hexdigest()


def _check_arrays(kind: str, arrays: dict[str, np.ndarray], where: str):
  if kind not in KINDS:
    raise ValueError(f"{where}: unknown cache kind {kind!r}; expected one of {sorted(KINDS)}")
  spec = {**KINDS[kind], **{k: v for k, v in OPTIONAL[kind].items() if k in arrays}}
  missing = sorted(set(KINDS[kind]) - set(arrays))
  if missing:
    raise ValueError(f"{where}: a {kind!r} cache needs arrays {missing}")
  for name, (dtype, ndim) in spec.items():
    a = arrays[name]
    if a.dtype != dtype or a.ndim != ndim:
      raise ValueError(f"{where}: array {name!r} must be {np.dtype(dtype).name} with {ndim} dims, "
                       f"got {a.dtype} with shape {a.shape}")
  if kind == "box_masks" and arrays["masks"].shape[:2] != arrays["boxes"].shape[:2]:
    raise ValueError(f"{where}: masks {arrays['masks'].shape} and boxes {arrays['boxes'].shape} differ in N x G")
  if kind == "masks":
    n = arrays["masks"].shape[1]
    for k in ("object_ids", "prompt_frames", "prompt_points", "prompt_classes", "prompt_scores"):
      if k in arrays and arrays[k].shape[:1] != (n,):
        raise ValueError(f"{where}: {k} must have N={n} entries, got shape {arrays[k].shape}")


def write_cache(path, kind: str, arrays: dict[str, np.ndarray], *, video_digest: str, teacher: str,
                teacher_digest: str, params: dict, versions: dict) -> Path:
  """Writes one cache file atomically (a temporary file, then rename)."""
  path = Path(path)
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  _check_arrays(kind, arrays, str(path))
  meta = {"schema_version": SCHEMA_VERSION, "kind": kind, "video_digest": video_digest,
          "teacher": teacher, "teacher_digest": teacher_digest, "params": params, "versions": versions}
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
  np.savez_compressed(tmp, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
  os.replace(tmp, path)
  return path


def read_meta(path) -> dict:
  with np.load(path, allow_pickle=False) as z:
    return json.loads(z["__meta__"].tobytes().decode())


def read_cache(path, kind: str, *, video_digest: str, teacher: str | None = None,
               teacher_digest: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
  """Returns `(arrays, meta)`; raises CacheMismatch if it belongs to another video/teacher."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"no cache at {path}")
  try:
    with np.load(path, allow_pickle=False) as z:
      meta = json.loads(z["__meta__"].tobytes().decode())
      arrays = {k: z[k] for k in z.files if k != "__meta__"}
  except (OSError, ValueError, KeyError) as e:
    raise ValueError(f"{path} is not a readable ttt-jax cache: {e}") from e
  if meta.get("schema_version") != SCHEMA_VERSION:
    raise CacheMismatch(f"{path}: schema version {meta.get('schema_version')}, this code reads {SCHEMA_VERSION}")
  if meta.get("kind") != kind:
    raise CacheMismatch(f"{path}: holds {meta.get('kind')!r}, asked for {kind!r}")
  if meta["video_digest"] != video_digest:
    raise CacheMismatch(f"{path} was built from another video (digest {meta['video_digest'][:12]}..., "
                        f"this video {video_digest[:12]}...)")
  if teacher is not None and meta["teacher"] != teacher:
    raise CacheMismatch(f"{path} was built by teacher {meta['teacher']!r}, asked for {teacher!r}")
  if teacher_digest is not None and meta["teacher_digest"] != teacher_digest:
    raise CacheMismatch(f"{path} was built from another {meta['teacher']} checkpoint "
                        f"({meta['teacher_digest'][:12]}..., asked for {teacher_digest[:12]}...)")
  _check_arrays(kind, arrays, str(path))
  return arrays, meta
