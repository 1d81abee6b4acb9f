"""Your own video (data.name=frames): folders of images and video files, fit and
padded, no labels; `ttt-jax run` on it; the live stream."""
import json

import cv2
import numpy as np
import pytest

from ttt_jax.data.frames import fit_into, iter_videos
from ttt_jax.runner.run import run
from tests.helpers import random_frames, tiny_config, tiny_runner


def _write_folder(folder, frames):
  folder.mkdir(parents=True)
  for t, f in enumerate(frames):
    assert cv2.imwrite(str(folder / f"{t:05d}.png"), f[..., ::-1])
  return folder


def _write_video(path, frames, fps=10):
  h, w = frames.shape[1:3]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
  for f in frames:
    writer.write(np.ascontiguousarray(f[..., ::-1]))
  writer.release()
  return path


def test_fit_into_keeps_aspect_and_pads_bottom_right():
  f = np.full((40, 60, 3), 200, np.uint8)
  out = fit_into(f, (64, 128))  # scale 1.6: 64 x 96, then 32 black columns
  assert out.shape == (64, 128, 3)
  assert (out[:, :96] == 200).all() and (out[:, 96:] == 0).all()
  assert fit_into(np.zeros((480, 960, 3), np.uint8), (480, 864)).shape == (480, 864, 3)


def test_folders_and_video_files_become_unlabelled_videos(tmp_path):
  frames = random_frames(t=5, h=40, w=60, seed=1)
  _write_folder(tmp_path / "root" / "walk", frames)
  _write_video(tmp_path / "root" / "drive.avi", frames[:3])
  (tmp_path / "root" / "notes.txt").write_text("not a video")
  got = {vid: (f, lab) for vid, f, lab in iter_videos(tmp_path / "root", size=(64, 96))}
  assert sorted(got) == ["drive", "walk"]
  assert got["walk"][0].shape == (5, 64, 96, 3) and got["walk"][1] is None
  assert got["drive"][0].shape == (3, 64, 96, 3)
  np.testing.assert_array_equal(got["walk"][0][0], fit_into(frames[0], (64, 96)))  # PNG is lossless
  # One folder of images, or one video file, is itself the video; max_frames cuts it.
  (vid, f, _), = iter_videos(tmp_path / "root" / "walk", size=(64, 96), max_frames=2)
  assert vid == "walk" and len(f) == 2


def test_bad_frames_are_refused_naming_the_file(tmp_path):
  frames = random_frames(t=3, h=40, w=60)
  mixed = _write_folder(tmp_path / "mixed", frames)
  cv2.imwrite(str(mixed / "00009.png"), np.zeros((30, 60, 3), np.uint8))
  with pytest.raises(ValueError, match=r"00009.png is 30 x 60 but the first frame 00000.png is 40 x 60"):
    list(iter_videos(mixed, size=(64, 96)))
  broken = _write_folder(tmp_path / "broken", frames)
  (broken / "00001.png").write_bytes(b"not a png")
  with pytest.raises(ValueError, match=r"cannot read image .*00001.png"):
    list(iter_videos(broken, size=(64, 96)))
  (tmp_path / "empty.mp4").write_bytes(b"")
  with pytest.raises(ValueError, match=r"video file .*empty.mp4: no frame could be decoded"):
    list(iter_videos(tmp_path / "empty.mp4", size=(64, 96)))
  with pytest.raises(FileNotFoundError, match="data.root .*missing does not exist"):
    list(iter_videos(tmp_path / "missing", size=(64, 96)))
  with pytest.raises(ValueError, match="multiples of 32, got 60 x 96"):
    list(iter_videos(broken, size=(60, 96)))


def test_run_on_your_own_video_writes_predictions_overlays_and_no_metrics(tmp_path):
  frames = random_frames(t=5, h=40, w=60, seed=2)
  _write_video(tmp_path / "clip.avi", frames)
  c = tiny_config("online_ttt_mae", "data.name=frames", f"data.root={tmp_path / 'clip.avi'}",
                  "data.height=32", "data.width=32")
  res = run(c, tmp_path / "out", progress=False)
  assert res["metrics"] is None and res["frames"] == 5 and res["fps"] > 0
  curve = res["per_video"]["clip"]["loss_curve"]
  assert len(curve) == 5 and all(np.isfinite(curve)) and curve[1] > 0, curve
  z = np.load(tmp_path / "out" / "predictions" / "clip.npz")
  assert z["labels"].shape == (5, 32, 32)
  strip = cv2.imread(str(tmp_path / "out" / "overlays" / "clip.jpg"))
  assert strip.shape == (32, 5 * 32, 3)
  assert json.loads((tmp_path / "out" / "results.json").read_text())["evaluated"].startswith("nothing")


def test_live_stream_predicts_as_the_stream_driver():
  """Frames handed over one at a time (a generator, as from a camera) give the
  labels `run_one(driver='stream')` gives on the whole video, bit for bit."""
  r, _ = tiny_runner("online_ttt_mae")
  frames = random_frames(t=4, seed=3)
  whole, stats = r.run_one("v", frames, 0, driver="stream")
  live = list(r.stream(iter(frames), index=0))
  np.testing.assert_array_equal(np.stack([lab for lab, _ in live]), whole)
  np.testing.assert_allclose([loss for _, loss in live], stats["loss"][:4])
  with pytest.raises(ValueError, match=r"live frame 1: shape \(16, 32, 3\), but the stream started with"):
    list(r.stream(iter([frames[0], frames[0][:16]])))
