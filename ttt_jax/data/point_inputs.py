"""A scene's points as the fixed-size arrays a compiled point model reads.

Every scene is padded to `num_points` rows with a validity mask, so one program
serves every scene and scenes vmap. Input features are Pointcept's: colour scaled to
[-1, 1] (`NormalizeColor`: c / 127.5 - 1) and the unit normal, 6 per point.
"""
from __future__ import annotations

import numpy as np

from ttt_jax.data.projection import check_views
from ttt_jax.data.scannet import IGNORE, PointScene


def pad_scene(scene: PointScene, num_points: int, what: str | None = None) -> dict[str, np.ndarray]:
  """`{coord_N3, feat_N6, valid_N, label_N}` of a scene padded to `num_points` rows
  (padding: coordinates of the first point, zero features, label `IGNORE`).

  Raises, naming the scene: an empty scene, non-finite coordinates, colours or
  normals of another length, more points than `num_points`.
  """
  what = what or f"scene {scene.scene_id}"
  coord = np.asarray(scene.coord_N3, np.float32)
  check_views(what, points_N3=coord)
  n = len(coord)
  for name, arr, shape in (("colours", scene.color_N3, (n, 3)), ("normals", scene.normal_N3, (n, 3)),
                           ("labels", scene.segment_N, (n,))):
    if np.shape(arr) != shape:
      raise ValueError(f"{what}: {name} of shape {np.shape(arr)} for {n} points; expected {shape}")
  if not np.isfinite(np.asarray(scene.normal_N3, np.float32)).all():
    raise ValueError(f"{what}: normals contain NaN or infinite values")
  if n > num_points:
    raise ValueError(f"{what} has {n} points, more than the padded size {num_points} "
                     "(engine.num_points); raise it or subsample the scene")
  out = {"coord_N3": np.repeat(coord[:1], num_points, axis=0), "feat_N6": np.zeros((num_points, 6), np.float32),
         "valid_N": np.zeros(num_points, bool), "label_N": np.full(num_points, IGNORE, np.int32)}
  out["coord_N3"][:n] = coord
  out["feat_N6"][:n, :3] = np.asarray(scene.color_N3, np.float32) / 127.5 - 1.0
  out["feat_N6"][:n, 3:] = scene.normal_N3
  out["valid_N"][:n] = True
  out["label_N"][:n] = scene.segment_N
  return out
