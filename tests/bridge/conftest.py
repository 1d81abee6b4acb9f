"""Bridge fixtures: a short synthetic video and ISS-like probabilities (numpy only)."""
import numpy as np
import pytest

from ttt_jax.data.synthetic import VideoSpec, make_video


def fake_probs(labels_THW, num_classes=8, seed=0, sharp=4.0):
  """Softmax of one-hot labels plus noise: an image model that is mostly right."""
  rng = np.random.default_rng(seed)
  z = np.eye(num_classes)[labels_THW] * sharp + rng.normal(size=(*labels_THW.shape, num_classes))
  p = np.exp(z - z.max(-1, keepdims=True))
  return (p / p.sum(-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="session")
def clip():
  frames, labels, _ = make_video(VideoSpec(seed=5, num_frames=8, height=64, width=64))
  return frames, labels, fake_probs(labels)
