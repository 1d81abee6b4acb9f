"""CAST's data: the labelled, unlabelled and validation sets of a config, as padded
arrays, checked before any training.

`c.data.name`: 'synthetic' (`data.instances`; `seed`, `size`, `num_train`,
`labelled_fraction`, `num_val`), 'shapes' (`data.shapes`, the same keys: the
foundation pretraining's generic shapes), 'cityscapes' (`root`; labelled/unlabelled split of
`train` by `labelled_fraction`, val = `val`) or 'coco' (`train_json`, `val_json`,
`image_dir`); real images are resized to `c.image_hw` (area; masks nearest).

Arrays: `images_NHW3` uint8, `labels_NG` int32 (-1 = padding), `masks_NGHW` bool,
G = `c.max_targets` (images with more instances keep the largest G).
"""
from __future__ import annotations

import cv2
import numpy as np

from ttt_jax.data import instances


def check_image(im: instances.InstanceImage, num_classes: int, what: str) -> None:
  if im.image_HW3.ndim != 3 or im.image_HW3.shape[2] != 3:
    raise ValueError(f"{what}: image {im.image_id} has shape {im.image_HW3.shape}; expected H x W x 3")
  if im.masks_NHW.shape[1:] != im.image_HW3.shape[:2]:
    raise ValueError(f"{what}: image {im.image_id} is {im.image_HW3.shape[:2]} but its instance masks are "
                     f"{im.masks_NHW.shape[1:]}")
  bad = [int(c) for c in im.labels_N if not 0 <= c < num_classes]
  if bad:
    raise ValueError(f"{what}: image {im.image_id} has instances of unknown classes {bad[:5]} "
                     f"(expected 0..{num_classes - 1})")


def resize_instances(im: instances.InstanceImage, hw: tuple[int, int]) -> instances.InstanceImage:
  """The image resized to `hw` (area), its masks (nearest); instances that vanish are dropped."""
  h, w = hw
  if im.image_HW3.shape[:2] == (h, w):
    return im
  img = cv2.resize(im.image_HW3, (w, h), interpolation=cv2.INTER_AREA)
  masks = np.stack([cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
                    for m in im.masks_NHW]) if len(im.masks_NHW) else np.zeros((0, h, w), bool)
  keep = masks.reshape(len(masks), -1).any(1)
  return instances.InstanceImage(img, masks[keep], im.labels_N[keep], im.image_id)


def pad_targets(images: list[instances.InstanceImage], max_targets: int, what: str) -> dict[str, np.ndarray]:
  sizes = {im.image_HW3.shape for im in images}
  if len(sizes) != 1:
    raise ValueError(f"{what}: images of different sizes {sorted(sizes)[:3]}; resize them to one size")
  n, (h, w, _) = len(images), images[0].image_HW3.shape
  labels = np.full((n, max_targets), -1, np.int32)
  masks = np.zeros((n, max_targets, h, w), bool)
  for i, im in enumerate(images):
    order = np.argsort(-im.masks_NHW.reshape(len(im.labels_N), -1).sum(1), kind="stable")[:max_targets]
    labels[i, :len(order)] = im.labels_N[order]
    masks[i, :len(order)] = im.masks_NHW[order]
  return {"images_NHW3": np.stack([im.image_HW3 for im in images]), "labels_NG": labels, "masks_NGHW": masks}


def unpadded(arrays: dict[str, np.ndarray], i: int, image_id: str) -> instances.InstanceImage:
  """Row `i` of `pad_targets`' arrays as an image with only its real instances (for
  scoring a set's own images)."""
  keep = arrays["labels_NG"][i] >= 0
  return instances.InstanceImage(arrays["images_NHW3"][i], arrays["masks_NGHW"][i][keep], arrays["labels_NG"][i][keep],
                                 image_id)


def _split_train(train: list, d) -> tuple[list, list]:
  """A real dataset's training images, split at random (`d.seed`) into the labelled
  fraction and the unlabelled rest."""
  n_lab = instances.split_counts(len(train), d.labelled_fraction)["labelled"]
  order = np.random.default_rng(d.seed).permutation(len(train))
  return [train[i] for i in order[:n_lab]], [train[i] for i in order[n_lab:]]


def load_sets(c) -> dict:
  """{'labelled': arrays, 'unlabelled': arrays (no targets), 'val': [InstanceImage], 'classes': names}."""
  d = c.data
  if d.name == "synthetic":
    counts = instances.split_counts(d.num_train, d.labelled_fraction)
    lab = instances.make_split(d.seed, "labelled", counts["labelled"], d.size)
    unl = instances.make_split(d.seed, "unlabelled", counts["unlabelled"], d.size)
    val = instances.make_split(d.seed, "val", d.num_val, d.size)
    names = instances.CLASSES
  elif d.name == "shapes":   # generic shapes, the foundation pretraining's data
    from ttt_jax.data.shapes import CLASSES as names, make_shapes_image
    counts = instances.split_counts(d.num_train, d.labelled_fraction)
    lab = [make_shapes_image(d.seed, i, d.size) for i in range(d.num_train)]
    lab, unl = lab[:counts["labelled"]], lab[counts["labelled"]:]
    val = [make_shapes_image(d.seed, 10**6 + i, d.size) for i in range(d.num_val)]
  elif d.name == "cityscapes":
    from ttt_jax.data.cityscapes import CLASSES, read_cityscapes
    lab, unl = _split_train(read_cityscapes(d.root, "train", d.get("limit") or None), d)
    val, names = read_cityscapes(d.root, "val", d.get("limit") or None), CLASSES
  elif d.name == "coco":
    from ttt_jax.data.coco_instances import read_coco
    train, names = read_coco(d.train_json, d.image_dir, d.get("limit") or None)
    lab, unl = _split_train(train, d)
    val, _ = read_coco(d.val_json, d.image_dir, d.get("limit") or None)
  else:
    raise ValueError(f"unknown data.name {d.name!r}; expected synthetic, shapes, cityscapes or coco")
  if not lab:
    raise ValueError(f"the labelled set of data.name={d.name!r} is empty (labelled_fraction "
                     f"{d.labelled_fraction}); CAST needs labelled images")
  if len(names) != c.num_classes:
    raise ValueError(f"data {d.name!r} has {len(names)} classes but the config's num_classes is {c.num_classes}")
  for what, group in (("labelled", lab), ("unlabelled", unl), ("val", val)):
    for im in group:
      check_image(im, c.num_classes, f"{d.name} {what}")
  if d.name not in ("synthetic", "shapes"):   # real images to the config's size (the synthetic ones are made at it)
    lab, unl, val = ([resize_instances(im, tuple(c.image_hw)) for im in g] for g in (lab, unl, val))
  p = c.model.patch_size
  h, w = lab[0].image_HW3.shape[:2]
  if h % p or w % p:
    raise ValueError(f"{d.name} images are {h} x {w}; expected multiples of the patch size {p}")
  out = {"labelled": pad_targets(lab, c.max_targets, f"{d.name} labelled"), "val": val, "classes": tuple(names)}
  out["unlabelled"] = ({"images_NHW3": np.stack([im.image_HW3 for im in unl])} if unl
                       else {"images_NHW3": np.zeros((0, h, w, 3), np.uint8)})
  return out
