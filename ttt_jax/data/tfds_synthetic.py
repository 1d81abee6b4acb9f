"""The synthetic benchmark as a tensorflow-datasets builder (array_record, no TensorFlow).

    from ttt_jax.data.tfds_synthetic import build
    builder = build("/tmp/tfds", num_videos=4, num_frames=48, height=64, width=64)
    ds = builder.as_data_source(split="test")   # random access, numpy records
    ds[0]["frames"].shape                        # (48, 64, 64, 3)

Splits: `train` (clean labelled source stills, seeds < 1000), `test` (shifted
videos from held-out seeds), `test_shuffled` (the same videos, frames shuffled).
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from ttt_jax.data import synthetic


class SyntheticVideoTTT(tfds.core.GeneratorBasedBuilder):
  """Procedural street-like videos under a drifting domain shift."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}

  def __init__(self, *, num_videos=4, num_frames=48, height=64, width=64, num_stills=256,
               test_seed=1000, train_seed=1, **kwargs):
    self._p = dict(num_videos=num_videos, num_frames=num_frames, height=height, width=width,
                   num_stills=num_stills, test_seed=test_seed, train_seed=train_seed)
    super().__init__(**kwargs)

  def _info(self):
    h, w = self._p["height"], self._p["width"]
    return self.dataset_info_from_configs(
        description="ttt-jax synthetic video benchmark",
        features=tfds.features.FeaturesDict({
            "video_id": tfds.features.Text(),
            "frames": tfds.features.Tensor(shape=(None, h, w, 3), dtype=np.uint8),
            "labels": tfds.features.Tensor(shape=(None, h, w), dtype=np.uint8),
        }),
        supervised_keys=None)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples("train"), "test": self._generate_examples("test"),
            "test_shuffled": self._generate_examples("test_shuffled")}

  def _generate_examples(self, split):
    if split == "train":
      return self._stills()
    return self._videos(split == "test_shuffled")

  def _stills(self):
    p = self._p
    imgs, labs = synthetic.make_stills(p["train_seed"], p["num_stills"], p["height"], p["width"])
    for i in range(len(imgs)):
      yield f"still_{i:05d}", {"video_id": f"still_{i:05d}", "frames": imgs[i:i + 1], "labels": labs[i:i + 1]}

  def _videos(self, shuffled):
    p = self._p
    for vid, f, lab in synthetic.benchmark_videos(seed=p["test_seed"], num_videos=p["num_videos"],
                                                  num_frames=p["num_frames"], height=p["height"],
                                                  width=p["width"], shuffled=shuffled):
      yield vid, {"video_id": vid, "frames": f, "labels": lab}


def build(data_dir, **params) -> SyntheticVideoTTT:
  """Builds (once) and returns the builder; read with `as_data_source`."""
  b = SyntheticVideoTTT(data_dir=str(data_dir), file_format="array_record", **params)
  b.download_and_prepare()
  return b
