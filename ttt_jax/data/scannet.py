"""3D scenes on disk: ScanNet v2 as released and exported, and Pointcept's preprocessed scenes.

ScanNet v2, one folder per scene (the release plus the SensReader export):

    <scene>_vh_clean_2.ply          mesh: vertex x y z (metres) red green blue [alpha], faces
    <scene>_vh_clean_2.labels.ply   the same vertices with `label`, a NYU40 id (0 = unannotated)
    color/<i>.jpg                   RGB frames
    depth/<i>.png                   uint16 depth in millimetres, 0 = no measurement
    pose/<i>.txt                    4 x 4 camera-to-world (rows); failed tracking is written as -inf
    intrinsic/intrinsic_color.txt   4 x 4, the top-left 3 x 3 is K of the colour frames
    intrinsic/intrinsic_depth.txt   the same for the depth frames

Labels are the 20 benchmark classes: the NYU40 ids in `NYU40_IDS_20` map to 0..19 in
that order; every other id (and 0) is `IGNORE` (-1). Normals are the mesh's
area-weighted vertex normals, as Pointcept's preprocessing computes them (Open3D).

Pointcept, one folder per scene: `coord.npy` (N x 3 float, metres), `color.npy`
(N x 3, 0..255), `normal.npy` (N x 3), `segment20.npy` (N, ScanNet-20 ids, -1 ignored).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from ttt_jax.data.projection import check_views

IGNORE = -1
# ScanNet's 20 benchmark classes as NYU40 ids (wall, floor, cabinet, bed, chair, sofa,
# table, door, window, bookshelf, picture, counter, desk, curtain, refrigerator,
# shower curtain, toilet, sink, bathtub, otherfurniture).
NYU40_IDS_20 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
CLASSES_20 = ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
              "bookshelf", "picture", "counter", "desk", "curtain", "refrigerator",
              "shower curtain", "toilet", "sink", "bathtub", "otherfurniture")


@dataclasses.dataclass(frozen=True)
class PointScene:
  """A scene's points. `coord_N3` float32 metres, `color_N3` uint8 RGB, `normal_N3`
  float32 unit vectors, `segment_N` int32 class ids (`IGNORE` = unlabelled)."""
  scene_id: str
  coord_N3: np.ndarray
  color_N3: np.ndarray
  normal_N3: np.ndarray
  segment_N: np.ndarray


@dataclasses.dataclass(frozen=True)
class SceneViews:
  """Posed RGB-D frames of a scene: `color_VHW3` uint8, `depth_VhW` float32 metres
  (its own size), `pose_V44` camera-to-world, intrinsics of each image, frame ids."""
  color_VHW3: np.ndarray
  depth_VhW: np.ndarray
  pose_V44: np.ndarray
  color_K_33: np.ndarray
  depth_K_33: np.ndarray
  frame_ids: tuple[int, ...]


def nyu40_to_20(labels_N: np.ndarray) -> np.ndarray:
  """NYU40 ids -> ScanNet-20 ids (0..19), `IGNORE` elsewhere."""
  ids = np.asarray(labels_N, np.int64)
  lut = np.full(max(NYU40_IDS_20) + 1, IGNORE, np.int32)
  lut[list(NYU40_IDS_20)] = np.arange(len(NYU40_IDS_20))
  out = np.full(ids.shape, IGNORE, np.int32)
  ok = (ids >= 0) & (ids < len(lut))
  out[ok] = lut[ids[ok]]
  return out


def vertex_normals(vertices_N3: np.ndarray, faces_F3: np.ndarray) -> np.ndarray:
  """Area-weighted vertex normals of a triangle mesh, unit length (0 for a vertex in no face)."""
  v = np.asarray(vertices_N3, np.float64)
  f = np.asarray(faces_F3, np.int64)
  face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])   # length = 2 x area
  n = np.zeros_like(v)
  for k in range(3):
    np.add.at(n, f[:, k], face_n)
  norm = np.linalg.norm(n, axis=1, keepdims=True)
  return (n / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def _read_ply(path: Path):
  from plyfile import PlyData
  if not path.is_file():
    raise FileNotFoundError(f"{path} is missing (a ScanNet v2 scene folder has <scene>_vh_clean_2.ply "
                            "and <scene>_vh_clean_2.labels.ply)")
  return PlyData.read(str(path))


def read_scannet_scene(folder, scene_id: str | None = None) -> PointScene:
  """The mesh vertices of a ScanNet v2 scene with colours, normals and 20-class labels."""
  folder = Path(folder)
  scene_id = scene_id or folder.name
  mesh = _read_ply(folder / f"{scene_id}_vh_clean_2.ply")
  vert = mesh["vertex"]
  coord = np.stack([vert["x"], vert["y"], vert["z"]], -1).astype(np.float32)
  color = np.stack([vert["red"], vert["green"], vert["blue"]], -1).astype(np.uint8)
  faces = np.stack(mesh["face"]["vertex_indices"]) if "face" in mesh else np.zeros((0, 3), np.int64)
  check_views(f"{folder / (scene_id + '_vh_clean_2.ply')}", points_N3=coord)
  labels_ply = _read_ply(folder / f"{scene_id}_vh_clean_2.labels.ply")["vertex"]
  if len(labels_ply) != len(coord):
    raise ValueError(f"{folder / (scene_id + '_vh_clean_2.labels.ply')}: {len(labels_ply)} vertices, "
                     f"the mesh has {len(coord)}")
  return PointScene(scene_id, coord, color, vertex_normals(coord, faces),
                    nyu40_to_20(np.asarray(labels_ply["label"])))


def _matrix(path: Path) -> np.ndarray:
  if not path.is_file():
    raise FileNotFoundError(f"{path} is missing")
  m = np.loadtxt(path, dtype=np.float64)
  if m.shape != (4, 4):
    raise ValueError(f"{path}: expected a 4 x 4 matrix, got shape {m.shape}")
  return m


def read_scannet_views(folder, frame_ids=None) -> SceneViews:
  """Posed RGB-D frames of an exported ScanNet scene (`frame_ids`: which, default all).
  Frames whose pose is not finite (ScanNet writes -inf where tracking failed) are skipped."""
  folder = Path(folder)
  if frame_ids is None:
    frame_ids = sorted(int(p.stem) for p in (folder / "pose").glob("*.txt"))
  if not frame_ids:
    raise ValueError(f"{folder}: no frames (pose/<i>.txt) to read")
  kc = _matrix(folder / "intrinsic" / "intrinsic_color.txt")[:3, :3]
  kd = _matrix(folder / "intrinsic" / "intrinsic_depth.txt")[:3, :3]
  colors, depths, poses, kept = [], [], [], []
  for i in frame_ids:
    pose = _matrix(folder / "pose" / f"{i}.txt")
    if not np.isfinite(pose).all():
      continue
    c = cv2.imread(str(folder / "color" / f"{i}.jpg"), cv2.IMREAD_COLOR)
    d = cv2.imread(str(folder / "depth" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
    if c is None or d is None:
      raise ValueError(f"{folder}: frame {i} has no readable color/{i}.jpg or depth/{i}.png")
    if d.dtype != np.uint16 or d.ndim != 2:
      raise ValueError(f"{folder / 'depth' / f'{i}.png'}: expected 16-bit single-channel millimetres, "
                       f"got {d.dtype} with shape {d.shape}")
    colors.append(cv2.cvtColor(c, cv2.COLOR_BGR2RGB))
    depths.append(d.astype(np.float32) / 1000.0)
    poses.append(pose)
    kept.append(i)
  if not kept:
    raise ValueError(f"{folder}: every frame's pose is invalid (-inf)")
  for what, arr in (("color", colors), ("depth", depths)):
    if len({a.shape for a in arr}) != 1:
      raise ValueError(f"{folder}: {what} frames of different sizes {sorted({a.shape for a in arr})}")
  pose = np.stack(poses).astype(np.float32)
  check_views(str(folder), cam_to_world_V44=pose, K_V33=np.stack([kc] * len(kept)))
  return SceneViews(np.stack(colors), np.stack(depths), pose, kc.astype(np.float32),
                    kd.astype(np.float32), tuple(kept))


def read_pointcept_scene(folder, scene_id: str | None = None) -> PointScene:
  """A Pointcept-preprocessed scene folder (coord, color, normal, segment20 .npy)."""
  folder = Path(folder)
  arrays = {}
  for name in ("coord", "color", "normal", "segment20"):
    p = folder / f"{name}.npy"
    if not p.is_file():
      raise FileNotFoundError(f"{p} is missing (a Pointcept scene has coord, color, normal, segment20 .npy)")
    arrays[name] = np.load(p)
  n = len(arrays["coord"])
  for name, a in arrays.items():
    want = (n,) if name == "segment20" else (n, 3)
    if a.shape != want:
      raise ValueError(f"{folder / (name + '.npy')}: shape {a.shape}, expected {want}")
  check_views(str(folder / "coord.npy"), points_N3=arrays["coord"])
  seg = arrays["segment20"]
  if seg.size and (seg.min() < IGNORE or seg.max() >= len(CLASSES_20)):
    raise ValueError(f"{folder / 'segment20.npy'}: ids must be in [-1, {len(CLASSES_20) - 1}], "
                     f"got {int(seg.min())}..{int(seg.max())}")
  return PointScene(scene_id or folder.name, arrays["coord"].astype(np.float32),
                    np.clip(arrays["color"], 0, 255).astype(np.uint8),
                    arrays["normal"].astype(np.float32), arrays["segment20"].astype(np.int32))
