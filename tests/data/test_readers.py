"""VSPW and KITTI-STEP readers on tiny fixtures written in the released layouts; evaluate."""
import cv2
import numpy as np
import pytest

from ttt_jax.data import kitti_step, vspw
from ttt_jax.data.image_io import write_label_png


def _write_vspw(root, videos, t=3, h=20, w=30):
  rng = np.random.default_rng(0)
  (root / "val.txt").write_text("\n".join(videos) + "\n")
  raws = {}
  for v in videos:
    raw = rng.integers(0, 6, (t, h, w)).astype(np.uint8)
    raw[:, 0, 0] = 255
    raws[v] = raw
    for i in range(t):
      d = root / "data" / v
      (d / "origin").mkdir(parents=True, exist_ok=True)
      cv2.imwrite(str(d / "origin" / f"{i:08d}.jpg"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
      write_label_png(d / "mask" / f"{i:08d}.png", raw[i])
  return raws


def test_vspw_reader_maps_labels_and_pads(tmp_path):
  raws = _write_vspw(tmp_path, ["127_-hIVCYO4C90", "1001_5z_5mzFxOS8"])
  vids = list(vspw.iter_videos(tmp_path))
  assert [v for v, _, _ in vids] == ["127_-hIVCYO4C90", "1001_5z_5mzFxOS8"]
  _, frames, labels = vids[0]
  # 20x30 fits 853x480 at scale 24 -> 480x720, padded to multiples of 32 -> 480x736.
  assert frames.shape == (3, 480, 736, 3) and labels.shape == (3, 480, 736)
  assert (labels[:, :, 720:] == 255).all()
  small = vspw.read_video(tmp_path, "127_-hIVCYO4C90", size=(20, 30))[1]
  raw = raws["127_-hIVCYO4C90"]
  expect = raw.astype(int) - 1
  expect[(raw == 0) | (raw == 255)] = 255
  np.testing.assert_array_equal(small, expect)


def test_vspw_missing_label_is_named(tmp_path):
  _write_vspw(tmp_path, ["a"])
  (tmp_path / "data" / "a" / "mask" / "00000001.png").unlink()
  with pytest.raises(ValueError, match="00000001.jpg has no label"):
    vspw.read_video(tmp_path, "a")
  with pytest.raises(FileNotFoundError, match="not a VSPW root"):
    vspw.list_videos(tmp_path / "nope")


def test_kitti_step_reader(tmp_path):
  rng = np.random.default_rng(1)
  sem = rng.integers(0, 19, (2, 8, 12)).astype(np.uint8)
  inst = rng.integers(0, 600, (2, 8, 12))
  for i in range(2):
    vs = tmp_path / "video_sequence" / "val"
    vs.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(vs / f"000002_{i:06d}_leftImg8bit.png"), rng.integers(0, 255, (8, 12, 3), dtype=np.uint8))
    pm = tmp_path / "panoptic_maps" / "val" / "0002"
    pm.mkdir(parents=True, exist_ok=True)
    rgb = np.stack([sem[i], inst[i] // 256, inst[i] % 256], -1).astype(np.uint8)
    cv2.imwrite(str(pm / f"{i:06d}.png"), rgb[..., ::-1])
  (vid, frames, labels), = kitti_step.iter_videos(tmp_path)
  assert vid == "kitti_000002" and frames.shape == (2, 8, 12, 3)
  np.testing.assert_array_equal(labels, sem)
  _, ins = kitti_step.decode_panoptic(cv2.imread(str(pm / "000001.png"), cv2.IMREAD_UNCHANGED))
  np.testing.assert_array_equal(ins, inst[1])


def test_evaluate_cli(tmp_path, capsys):
  from ttt_jax.cli.main import main
  gt = np.random.default_rng(2).integers(0, 4, (10, 6, 6))
  pred = gt.copy()
  pred[:, :3] = 0
  for i in range(10):
    write_label_png(tmp_path / "gt" / "v1" / f"{i:05d}.png", gt[i])
    write_label_png(tmp_path / "pred" / "v1" / f"{i:05d}.png", pred[i])
  assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"), "--json",
               str(tmp_path / "s.json")]) == 0
  out = capsys.readouterr().out
  assert "dataset" in out and (tmp_path / "s.json").exists()
  (tmp_path / "pred" / "v1" / "00009.png").unlink()
  assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt")]) == 2
  assert "missing ['00009']" in capsys.readouterr().err
