"""Dataset selection for point-cloud runs: `load_scenes(config.data)`.

Yields `(scene_id, RoomScene)` (points and posed RGB-D views):
- 'rooms': the synthetic paired rooms (`data.dataset` office | home, `data.split`,
  `data.seed`, `data.num_scenes`, `data.size`);
- 'scannet': ScanNet v2 scene folders under `data.root` as released and exported
  (`scannet.read_scannet_scene` + `read_scannet_views`, every `data.frame_stride`-th
  frame);
- 'pointcept': Pointcept-preprocessed scenes under `data.root` with their exported
  views under `data.views_root/<scene_id>`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ttt_jax.data import rooms, scannet

POINT_DATASETS = ("rooms", "scannet", "pointcept")


def load_scenes(d) -> Iterator[tuple[str, rooms.RoomScene]]:
  if d.name == "rooms":
    for s in rooms.iter_scenes(d.dataset, d.split, seed=d.seed, num_scenes=d.num_scenes, size=d.size):
      yield s.points.scene_id, s
    return
  if d.name not in POINT_DATASETS:
    raise ValueError(f"unknown point dataset {d.name!r}; expected one of {POINT_DATASETS}")
  root = Path(d.root)
  folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
  if not folders:
    raise FileNotFoundError(f"{root}: no scene folders (data.root)")
  for f in folders[:d.num_scenes or None]:
    if d.name == "scannet":
      pts, vdir = scannet.read_scannet_scene(f), f
    else:
      pts, vdir = scannet.read_pointcept_scene(f), Path(d.views_root) / f.name
    views = scannet.read_scannet_views(vdir)
    stride = max(int(d.get("frame_stride", 1)), 1)
    if stride > 1:
      views = scannet.read_scannet_views(vdir, views.frame_ids[::stride])
    yield pts.scene_id, rooms.RoomScene(pts, views, d.name)
