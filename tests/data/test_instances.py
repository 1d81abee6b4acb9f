"""CAST's data: the synthetic instance benchmark, the Cityscapes and COCO readers on
fixtures written here, and the checks before training."""
import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from ttt_jax.data import instances
from ttt_jax.data.cityscapes import read_cityscapes
from ttt_jax.data.coco_instances import read_coco
from ttt_jax.data.instance_sets import load_sets, pad_targets, unpadded
from ttt_jax.data.instances import InstanceImage


def test_synthetic_is_seeded_with_touching_occluding_instances_of_every_class():
  a, b = instances.make_image(1, "labelled", 3, "demo"), instances.make_image(1, "labelled", 3, "demo")
  assert a is b or np.array_equal(a.image_HW3, b.image_HW3)
  assert not np.array_equal(a.image_HW3, instances.make_image(2, "labelled", 3, "demo").image_HW3)
  assert not np.array_equal(a.image_HW3, instances.make_image(1, "unlabelled", 3, "demo").image_HW3)
  ims = instances.make_split(1, "val", 30, "demo")
  labels = np.concatenate([im.labels_N for im in ims])
  assert set(labels.tolist()) == set(range(instances.NUM_CLASSES))
  assert np.mean([len(im.labels_N) for im in ims]) >= 5, "many instances per image"
  touching = 0
  for im in ims:
    assert not (im.masks_NHW.sum(0) > 1).any(), "instance masks are disjoint"
    k = np.ones((3, 3), np.uint8)
    for i in range(len(im.masks_NHW)):
      grown = cv2.dilate(im.masks_NHW[i].astype(np.uint8), k).astype(bool)
      touching += any((grown & im.masks_NHW[j]).any() for j in range(len(im.masks_NHW)) if j != i)
  assert touching >= 30, f"only {touching} instances touch another"
  assert instances.split_counts(400, 0.1) == {"labelled": 40, "unlabelled": 360}


def _cityscapes_fixture(root, with_unknown=False, bad_size=False):
  for split, city, name in (("train", "aachen", "aachen_000000_000019"), ("train", "aachen", "aachen_000001_000019"),
                            ("val", "lindau", "lindau_000000_000019")):
    (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
    (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
    img = np.full((28, 42, 3), 90, np.uint8)
    ids = np.full((28, 42), 7, np.uint16)       # road (stuff)
    ids[2:10, 2:12] = 26 * 1000 + 0              # a car
    ids[12:20, 2:12] = 26 * 1000 + 1             # another car
    ids[2:10, 20:26] = 24 * 1000 + 0             # a person
    ids[20:26, 30:40] = 26                       # a car group without instance ids: ignored
    if with_unknown:
      ids[0, 0] = 7 * 1000 + 3                   # road has no instances
    cv2.imwrite(str(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png"), img)
    shape = (28, 40) if bad_size else (28, 42)
    cv2.imwrite(str(root / "gtFine" / split / city / f"{name}_gtFine_instanceIds.png"), ids[:shape[0], :shape[1]])


def test_cityscapes_reader_and_its_errors(tmp_path):
  _cityscapes_fixture(tmp_path / "ok")
  ims = read_cityscapes(tmp_path / "ok", "train")
  assert len(ims) == 2 and ims[0].image_id == "aachen_000000_000019"
  assert sorted(ims[0].labels_N.tolist()) == [0, 2, 2]    # person, car, car
  assert ims[0].masks_NHW.sum() == 80 + 80 + 48
  c = _config(name="cityscapes", root=str(tmp_path / "ok"))   # through the config: resized to image_hw
  c.num_classes, c.image_hw = 8, (14, 28)
  s = load_sets(c)
  assert s["labelled"]["images_NHW3"].shape == (1, 14, 28, 3) and len(s["unlabelled"]["images_NHW3"]) == 1
  assert s["val"][0].masks_NHW.shape == (3, 14, 28) and s["classes"][2] == "car"
  _cityscapes_fixture(tmp_path / "unknown", with_unknown=True)
  with pytest.raises(ValueError, match=r"instanceIds.png.*not Cityscapes thing classes"):
    read_cityscapes(tmp_path / "unknown", "train")
  _cityscapes_fixture(tmp_path / "size", bad_size=True)
  with pytest.raises(ValueError, match=r"leftImg8bit.png is \(28, 42\) but its instance map"):
    read_cityscapes(tmp_path / "size", "val")


def test_coco_reader_polygons_rle_crowd_and_unknown_category(tmp_path):
  cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 30, 3), np.uint8))
  rle = mask_utils.encode(np.asfortranarray(np.pad(np.ones((4, 4), np.uint8), ((10, 6), (20, 6)))))
  rle["counts"] = rle["counts"].decode()
  data = {"images": [{"id": 7, "file_name": "a.png", "height": 20, "width": 30}],
          "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}],
          "annotations": [
              {"id": 1, "image_id": 7, "category_id": 3, "iscrowd": 0, "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
              {"id": 2, "image_id": 7, "category_id": 1, "iscrowd": 0, "segmentation": rle},
              {"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 1, "segmentation": rle}]}
  (tmp_path / "ann.json").write_text(json.dumps(data))
  ims, names = read_coco(tmp_path / "ann.json", tmp_path)
  assert names == ["dog", "cat"] and ims[0].labels_N.tolist() == [1, 0]
  assert ims[0].masks_NHW.shape == (2, 20, 30) and ims[0].masks_NHW[1].sum() == 16
  data["annotations"][0]["category_id"] = 9
  (tmp_path / "bad.json").write_text(json.dumps(data))
  with pytest.raises(ValueError, match=r"bad.json: annotations of category ids \[9\]"):
    read_coco(tmp_path / "bad.json", tmp_path)


def _config(**data):
  from ttt_jax.cli.config_io import load_config_file
  from tests.helpers import CONFIGS
  c = load_config_file(f"{CONFIGS / 'cast'}.py:tiny")
  c.data.update(data)
  return c


def test_sets_are_padded_and_bad_input_is_refused(monkeypatch):
  c = _config()
  s = load_sets(c)
  assert s["labelled"]["images_NHW3"].shape == (2, 56, 56, 3) and s["labelled"]["labels_NG"].shape == (2, 8)
  assert len(s["unlabelled"]["images_NHW3"]) == 6 and len(s["val"]) == 4
  with pytest.raises(ValueError, match="labelled set of data.name='synthetic' is empty"):
    monkeypatch.setattr(instances, "split_counts", lambda n, f: {"labelled": 0, "unlabelled": n})
    load_sets(c)
  monkeypatch.undo()
  im = instances.make_image(0, "val", 0, "tiny")
  bad = InstanceImage(im.image_HW3, im.masks_NHW[:, :50], im.labels_N, "x")
  monkeypatch.setattr(instances, "make_split", lambda *a: [bad])
  with pytest.raises(ValueError, match=r"image x is \(56, 56\) but its instance masks are \(50, 56\)"):
    load_sets(c)
  unknown = InstanceImage(im.image_HW3, im.masks_NHW, im.labels_N + 7, "y")
  monkeypatch.setattr(instances, "make_split", lambda *a: [unknown])
  with pytest.raises(ValueError, match="image y has instances of unknown classes"):
    load_sets(c)


def test_unpadded_gives_back_the_instances_pad_targets_kept():
  """A padded row read back is the image's instances, largest first, without padding."""
  im = instances.make_image(0, "val", 0, "tiny")
  arrays = pad_targets([im], len(im.labels_N) + 3, "val")
  back = unpadded(arrays, 0, "again")
  order = np.argsort(-im.masks_NHW.reshape(len(im.labels_N), -1).sum(1), kind="stable")
  assert back.image_id == "again" and len(back.labels_N) == len(im.labels_N) > 0
  np.testing.assert_array_equal(back.image_HW3, im.image_HW3)
  np.testing.assert_array_equal(back.labels_N, im.labels_N[order])
  np.testing.assert_array_equal(back.masks_NHW, im.masks_NHW[order])


def test_shapes_for_foundation_pretraining_are_seeded_labelled_and_of_other_classes():
  from ttt_jax.data import shapes
  a = shapes.make_shapes_image(0, 5, "demo")
  assert np.array_equal(a.image_HW3, shapes.make_shapes_image(0, 5, "demo").image_HW3)
  assert not np.array_equal(a.image_HW3, shapes.make_shapes_image(1, 5, "demo").image_HW3)
  ims = [shapes.make_shapes_image(0, i, "demo") for i in range(20)]
  assert set(np.concatenate([im.labels_N for im in ims]).tolist()) == set(range(len(shapes.CLASSES)))
  assert np.mean([len(im.labels_N) for im in ims]) >= 5
  for im in ims:
    assert not (im.masks_NHW.sum(0) > 1).any() and im.masks_NHW.reshape(len(im.labels_N), -1).any(1).all()
  assert set(shapes.CLASSES).isdisjoint(instances.CLASSES)
  from ml_collections import ConfigDict
  c = ConfigDict(dict(num_classes=4, max_targets=8, image_hw=(56, 56), model=dict(patch_size=14), data=dict(
      name="shapes", seed=0, size="tiny", num_train=6, labelled_fraction=1.0, num_val=3)))
  sets = load_sets(c)
  assert sets["labelled"]["images_NHW3"].shape == (6, 56, 56, 3) and len(sets["unlabelled"]["images_NHW3"]) == 0
  assert sets["classes"] == shapes.CLASSES and [im.image_id for im in sets["val"]][0] == "shapes-s0-1000000"
