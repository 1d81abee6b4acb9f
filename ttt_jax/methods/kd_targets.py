"""TTT-KD's distillation targets: a frozen 2D teacher's features of a scene's images,
cached per scene, lifted onto its points.

Teachers:
- 'room_teacher': the shipped stand-in (`models.room_teacher`; not DINOv2), run here
  on first use and cached;
- 'dinov2': DINOv2 patch features from the bridge (`sam2-bridge features`), which
  ttt_jax never imports: write the scene's colour images (`views.color_VHW3`) as a
  `.npy`, run `sam2-bridge features --video IMAGES.npy --model DINOV2_DIR --out
  CACHE_DIR/<scene_id>.npz`, and point `method.ttt_kd.features_dir` at CACHE_DIR.

Both caches are the bridge's (`sam2_bridge.cache_schema`, kind 'features', float16
`V, h, w, C`), keyed by the digest of the scene's colour images and the teacher's
weights: a cache of another scene or teacher is refused, naming the file.
"""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from sam2_bridge import cache_schema
from ttt_jax.checkpoint.model_io import load_model, variables_digest
from ttt_jax.data.projection import check_views, point_features
from ttt_jax.data.scannet import SceneViews
from ttt_jax.io.versions import versions
from ttt_jax.models.room_teacher import RoomTeacher

ASSETS = Path(__file__).resolve().parent.parent / "assets"
ROOM_TEACHER = ASSETS / "room_teacher"
TEACHERS = ("room_teacher", "dinov2")


class Teacher:
  """A loaded stand-in teacher: `features(images_VHW3) -> float16 V, h, w, C`."""

  def __init__(self, path=ROOM_TEACHER):
    path = Path(path)
    if not (path / "model.json").exists():
      raise FileNotFoundError(f"the stand-in teacher is missing at {path}; train it with "
                              "`ttt-jax pretrain configs/room_teacher.py --out DIR` and copy DIR/model there")
    self.variables, self.cfg, self.meta = load_model(path, "room_teacher")
    self.digest = variables_digest(self.variables)
    model = RoomTeacher(self.cfg)
    self._apply = jax.jit(lambda v, x: model.apply(v, x, method="features"))

  @property
  def dim(self) -> int:
    return self.cfg.feature_dim

  def features(self, images_VHW3: np.ndarray) -> np.ndarray:
    return np.asarray(self._apply(self.variables, np.asarray(images_VHW3, np.uint8))).astype(np.float16)


def check_scene_views(what: str, views: SceneViews):
  """Images, depth maps, poses and intrinsics of one scene agree (count and size)."""
  v = views
  check_views(what, cam_to_world_V44=v.pose_V44, K_V33=np.stack([v.color_K_33] * len(v.pose_V44)),
              images_V=v.color_VHW3, depth_VHW=v.depth_VhW)
  for name, k, img in (("colour", v.color_K_33, v.color_VHW3), ("depth", v.depth_K_33, v.depth_VhW)):
    h, w = np.asarray(img).shape[1:3]
    cx, cy = float(k[0, 2]), float(k[1, 2])
    if not (0 <= cx <= w and 0 <= cy <= h):
      raise ValueError(f"{what}: {name} intrinsics put the principal point at ({cx:.1f}, {cy:.1f}), "
                       f"outside its {w} x {h} images; the images do not match their intrinsics")


def scene_features(scene_id: str, views: SceneViews, *, teacher: str, features_dir=None,
                   stand_in: Teacher | None = None) -> np.ndarray:
  """The teacher's features of a scene's images (`V, h, w, C` float16), from the cache
  `features_dir/<scene_id>.npz`; the stand-in computes and caches them when missing."""
  if teacher not in TEACHERS:
    raise ValueError(f"unknown teacher {teacher!r} (method.ttt_kd.teacher); expected one of {TEACHERS}")
  digest = cache_schema.video_digest(views.color_VHW3)
  path = Path(features_dir) / f"{scene_id}.npz" if features_dir else None
  if teacher == "dinov2":
    if path is None:
      raise ValueError("teacher 'dinov2' reads cached features: set method.ttt_kd.features_dir "
                       "(made by `sam2-bridge features`)")
    arrays, _ = cache_schema.read_cache(path, "features", video_digest=digest, teacher="dinov2")
    return arrays["features"]
  stand_in = stand_in or Teacher()
  if path is not None and path.exists():
    arrays, _ = cache_schema.read_cache(path, "features", video_digest=digest, teacher="room_teacher",
                                        teacher_digest=stand_in.digest)
    return arrays["features"]
  feats = stand_in.features(views.color_VHW3)
  if path is not None:
    cache_schema.write_cache(path, "features", {"features": feats}, video_digest=digest,
                             teacher="room_teacher", teacher_digest=stand_in.digest,
                             params={"stride": stand_in.cfg.stride}, versions=versions())
  return feats


def lift(coord_N3: np.ndarray, views: SceneViews, feats_VhwC: np.ndarray, *, tolerance: float,
         max_views: int = 0, what: str = "scene") -> tuple[np.ndarray, np.ndarray]:
  """`(teacher_NC float32, views_N int32)`: each point's feature averaged over the
  views that see it (`projection.point_features`); `max_views` > 0 uses the first
  that many views only (the images-per-scene ablation)."""
  if len(feats_VhwC) != len(views.pose_V44):
    raise ValueError(f"{what}: {len(feats_VhwC)} feature maps for {len(views.pose_V44)} views")
  v = len(views.pose_V44) if max_views <= 0 else min(max_views, len(views.pose_V44))
  ck = np.stack([views.color_K_33] * v)
  dk = np.stack([views.depth_K_33] * v)
  f, n = point_features(np.asarray(coord_N3, np.float32), np.asarray(feats_VhwC[:v], np.float32),
                        tuple(views.color_VHW3.shape[1:3]), ck, np.asarray(views.depth_VhW[:v]), dk,
                        np.asarray(views.pose_V44[:v]), tolerance)
  return np.asarray(f), np.asarray(n)


def scene_targets(arrays: dict, views: SceneViews, feats_VhwC: np.ndarray, *, tolerance: float,
                  max_views: int = 0, what: str = "scene") -> dict[str, np.ndarray]:
  """`{teacher_NC, views_N}` of a padded scene (`point_inputs.pad_scene`): the lifted
  teacher features, and the views that see each point (0 on padding rows)."""
  teacher_NC, views_N = lift(arrays["coord_N3"], views, feats_VhwC, tolerance=tolerance,
                             max_views=max_views, what=what)
  return {"teacher_NC": teacher_NC, "views_N": np.where(arrays["valid_N"], views_N, 0).astype(np.int32)}
