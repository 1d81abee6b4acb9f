"""COCO-style instance JSON (`images`, `annotations` with polygon or RLE
`segmentation`, `categories`) with an image folder, read through pycocotools.

Categories map to contiguous class ids in the order of their COCO ids; crowd
annotations (`iscrowd` 1) are left out, as COCO's evaluation ignores them.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from ttt_jax.data.image_io import read_rgb
from ttt_jax.data.instances import InstanceImage


def read_coco(json_path, image_dir, limit: int | None = None) -> tuple[list[InstanceImage], list[str]]:
  """`(images, class_names)`."""
  json_path, image_dir = Path(json_path), Path(image_dir)
  if not json_path.is_file():
    raise FileNotFoundError(f"{json_path} not found (a COCO instance JSON)")
  data = json.loads(json_path.read_text())
  for key in ("images", "annotations", "categories"):
    if key not in data:
      raise ValueError(f"{json_path}: no '{key}' list; expected COCO instance JSON")
  cat_ids = sorted(c["id"] for c in data["categories"])
  unknown = sorted({a["category_id"] for a in data["annotations"]} - set(cat_ids))
  if unknown:
    raise ValueError(f"{json_path}: annotations of category ids {unknown[:5]} that 'categories' does not list")
  names = {c["id"]: c["name"] for c in data["categories"]}
  with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO()
    coco.dataset = data
    coco.createIndex()
  out = []
  for info in sorted(data["images"], key=lambda i: i["id"])[:limit]:
    f = image_dir / info["file_name"]
    img = read_rgb(f)
    if img.shape[:2] != (info["height"], info["width"]):
      raise ValueError(f"{f} is {img.shape[:2]} but {json_path} says {(info['height'], info['width'])}")
    anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=info["id"])) if not a.get("iscrowd", 0)]
    masks = [coco.annToMask(a).astype(bool) for a in anns]
    out.append(InstanceImage(img, np.stack(masks) if masks else np.zeros((0, *img.shape[:2]), bool),
                             np.asarray([cat_ids.index(a["category_id"]) for a in anns], np.int32),
                             str(info["id"])))
  return out, [names[c] for c in cat_ids]
