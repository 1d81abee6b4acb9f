"""Paired 2D-3D rooms, synthetic and seeded: TTT-KD's embedded default data.

Two "datasets" that differ the way S3DIS and ScanNet do (`rooms_layout.STYLES`,
`rooms_render.LOOKS`):

| dataset | like    | rooms                          | scans                                        |
| ------- | ------- | ------------------------------ | -------------------------------------------- |
| office  | S3DIS   | larger, desks, chairs, shelves | cool even light, dense, little noise, whole  |
| home    | ScanNet | smaller, beds, sofas, low tables| warm dim light, 60% density, noisy, holes   |

Each scene is a point cloud (coordinates, colour, normal, label of `CLASSES`) and
`views` posed RGB-D images of the same room (`scannet.PointScene`, `SceneViews`).
Splits: 'train' (source pretraining) and 'test'; the out-of-distribution setting
tests on the other dataset's 'test'. A scene is fixed by (dataset, split, seed,
index); seed 0 is for tuning, seeds >= 1 are held out (the benchmark reports them).

Sizes (`SIZES`): 'tiny' for tests, 'demo' (2048 points at most, 48 x 64 images) and
'full' (tens of thousands of points, 120 x 160 images).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Iterator

import numpy as np

from ttt_jax.data import rooms_layout, rooms_render
from ttt_jax.data.rooms_layout import CLASSES, IGNORE, NUM_CLASSES  # noqa: F401 (re-exported)
from ttt_jax.data.scannet import PointScene, SceneViews

DATASETS = ("office", "home")
SPLITS = ("train", "test")
SIZES = {
    "tiny": dict(num_points=1024, image_hw=(24, 32), views=4),
    "demo": dict(num_points=2048, image_hw=(48, 64), views=10),
    "full": dict(num_points=32768, image_hw=(120, 160), views=10),
}


@dataclasses.dataclass(frozen=True)
class RoomScene:
  """One scanned room: its points and its posed RGB-D views."""
  points: PointScene
  views: SceneViews
  dataset: str


def _size(size: str) -> dict:
  if size not in SIZES:
    raise ValueError(f"unknown rooms size {size!r}; expected one of {sorted(SIZES)}")
  return SIZES[size]


def scene_id(dataset: str, split: str, seed: int, index: int) -> str:
  return f"{dataset}_{split}_s{seed}_{index:04d}"


def scan_room(rng: np.random.Generator, boxes, size_3, look, *, num_points: int, image_hw, views: int,
              sid: str, dataset: str) -> RoomScene:
  """Scans a built room: its points and `views` rendered RGB-D views."""
  light = rooms_render.scene_light(rng)
  coord, colour, normal, label = rooms_render.sample_points(rng, boxes, size_3, look, light, num_points)
  K = rooms_render.intrinsics(*image_hw)
  poses, rgbs, depths = [], [], []
  for _ in range(views):
    pose = rooms_render.camera_pose(rng, boxes, size_3, look)
    rgb, depth, _ = rooms_render.render_view(rng, boxes, pose, K, image_hw, look, light)
    poses.append(pose), rgbs.append(rgb), depths.append(depth)
  return RoomScene(PointScene(sid, coord, colour, normal, label),
                   SceneViews(np.stack(rgbs), np.stack(depths), np.stack(poses), K, K.copy(), tuple(range(views))),
                   dataset)


def _read_only(scene: RoomScene) -> RoomScene:
  for part in (scene.points, scene.views):
    for f in dataclasses.fields(part):
      a = getattr(part, f.name)
      if isinstance(a, np.ndarray):
        a.setflags(write=False)
  return scene


@functools.lru_cache(maxsize=64)
def make_scene(dataset: str, split: str, seed: int, index: int, size: str = "demo") -> RoomScene:
  """Scene `index` of a dataset's split under `seed` (deterministic). Scenes are kept
  (the last 64), so runs over the same scenes generate them once; their arrays are
  read-only."""
  if dataset not in DATASETS:
    raise ValueError(f"unknown rooms dataset {dataset!r}; expected one of {DATASETS}")
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
  rng = np.random.default_rng([DATASETS.index(dataset), SPLITS.index(split), int(seed), int(index)])
  boxes, size_3 = rooms_layout.make_room(rng, rooms_layout.STYLES[dataset])
  return _read_only(scan_room(rng, boxes, size_3, rooms_render.LOOKS[dataset], **_size(size),
                             sid=scene_id(dataset, split, seed, index), dataset=dataset))


def iter_scenes(dataset: str, split: str, *, seed: int, num_scenes: int, size: str = "demo") -> Iterator[RoomScene]:
  for i in range(num_scenes):
    yield make_scene(dataset, split, seed, i, size)


def broad_views(seed: int, num_rooms: int, views: int, image_hw) -> tuple[np.ndarray, np.ndarray]:
  """Images and pixel labels of rooms in random styles and looks far beyond both
  datasets' (`broad_style`, `broad_look`): the stand-in teacher's training data.
  Returns `(rgb_NHW3 uint8, label_NHW int32)`, N = num_rooms * views."""
  rgbs, labels = [], []
  for r in range(num_rooms):
    rng = np.random.default_rng([7, int(seed), r])
    boxes, size_3 = rooms_layout.make_room(rng, rooms_layout.broad_style(rng))
    look = rooms_render.broad_look(rng)
    light = rooms_render.scene_light(rng)
    K = rooms_render.intrinsics(*image_hw)
    for _ in range(views):
      pose = rooms_render.camera_pose(rng, boxes, size_3, look)
      rgb, _, lab = rooms_render.render_view(rng, boxes, pose, K, image_hw, look, light)
      rgbs.append(rgb), labels.append(lab)
  return np.stack(rgbs), np.stack(labels)
