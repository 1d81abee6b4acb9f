"""Cityscapes instances: `leftImg8bit/SPLIT/CITY/NAME_leftImg8bit.png` with
`gtFine/SPLIT/CITY/NAME_gtFine_instanceIds.png`.

An instanceIds pixel is `label_id * 1000 + k` for an instance of a thing class and a
plain label id (< 1000) otherwise (stuff, or a thing group without instances, which
Cityscapes' evaluation ignores too). The 8 thing classes, in their usual order:
person 24, rider 25, car 26, truck 27, bus 28, train 31, motorcycle 32, bicycle 33.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ttt_jax.data.image_io import read_png, read_rgb
from ttt_jax.data.instances import InstanceImage

THING_IDS = (24, 25, 26, 27, 28, 31, 32, 33)
CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")


def instances_from_ids(ids_HW: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
  """`(masks_NHW, labels_N)` of an instanceIds map; unknown thing ids are an error."""
  ids = np.unique(ids_HW[ids_HW >= 1000])
  bad = sorted({int(i) // 1000 for i in ids} - set(THING_IDS))
  if bad:
    raise ValueError(f"{what}: instance ids of label ids {bad}, which are not Cityscapes thing classes "
                     f"{THING_IDS}")
  masks = np.stack([ids_HW == i for i in ids]) if len(ids) else np.zeros((0, *ids_HW.shape), bool)
  return masks, np.asarray([THING_IDS.index(int(i) // 1000) for i in ids], np.int32)


def read_cityscapes(root, split: str = "val", limit: int | None = None) -> list[InstanceImage]:
  root = Path(root)
  img_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
  images = sorted(img_dir.glob("*/*_leftImg8bit.png"))
  if not images:
    raise FileNotFoundError(f"no */*_leftImg8bit.png under {img_dir}")
  out = []
  for f in images[:limit]:
    name = f.name[: -len("_leftImg8bit.png")]
    g = gt_dir / f.parent.name / f"{name}_gtFine_instanceIds.png"
    if not g.is_file():
      raise FileNotFoundError(f"{g} not found (the instance map of {f})")
    img, ids = read_rgb(f), read_png(g).astype(np.int64)
    if img.shape[:2] != ids.shape:
      raise ValueError(f"{f} is {img.shape[:2]} but its instance map {g} is {ids.shape}")
    masks, labels = instances_from_ids(ids, str(g))
    out.append(InstanceImage(img, masks, labels, name))
  return out
