"""DINOv2 patch features through transformers' Dinov2Model (small random model)."""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from sam2_bridge import cache_schema  # noqa: E402
from sam2_bridge.features import extract_features, load_dinov2  # noqa: E402


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
  torch.manual_seed(0)
  cfg = transformers.Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, patch_size=14, image_size=224)
  d = tmp_path_factory.mktemp("dino")
  transformers.Dinov2Model(cfg).save_pretrained(d)
  return d


def test_features_match_the_model_output(dino_dir, clip):
  frames = clip[0][:3]
  model = load_dinov2(dino_dir)
  feats, _ = extract_features(model, frames, batch=2)
  assert feats.shape == (3, 4, 4, 64) and feats.dtype == np.float16   # 64 px floored to 56 = 4 x 14
  import cv2
  x = cv2.resize(frames[1], (56, 56), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
  x = (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
  with torch.inference_mode():
    ref = model(pixel_values=torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32))).last_hidden_state
  np.testing.assert_allclose(feats[1].astype(np.float32), ref[0, 1:].reshape(4, 4, 64).numpy(),
                             atol=2e-2, rtol=1e-2)


def test_cli_features_and_errors(dino_dir, clip, tmp_path):
  np.save(tmp_path / "f.npy", clip[0][:2])
  run = lambda *a: subprocess.run([sys.executable, "-m", "sam2_bridge.cli", "features", *a],
                                  capture_output=True, text=True)
  r = run("--video", str(tmp_path / "f.npy"), "--model", str(dino_dir), "--out", str(tmp_path / "c.npz"))
  assert r.returncode == 0, r.stderr
  arrays, meta = cache_schema.read_cache(tmp_path / "c.npz", "features",
                                         video_digest=cache_schema.video_digest(clip[0][:2]), teacher="dinov2",
                                         teacher_digest=cache_schema.checkpoint_digest(dino_dir))
  assert arrays["features"].shape == (2, 4, 4, 64)
  r = run("--video", str(tmp_path / "f.npy"), "--model", str(tmp_path / "none"), "--out", str(tmp_path / "x.npz"))
  assert r.returncode == 2 and "no config.json" in r.stderr
  np.save(tmp_path / "tiny.npy", np.zeros((1, 10, 10, 3), np.uint8))
  r = run("--video", str(tmp_path / "tiny.npy"), "--model", str(dino_dir), "--out", str(tmp_path / "x.npz"))
  assert r.returncode == 2 and "at least 14 px" in r.stderr
