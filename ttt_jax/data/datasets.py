"""Dataset selection for video runs: `load_videos(config.data)`."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ttt_jax.data import synthetic


def load_videos(d) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
  """Yields `(video_id, frames_THW3 uint8, labels_THW)` for a `config.data` block
  (`labels_THW` is None for `frames`: your own video, unlabelled)."""
  if d.name == "synthetic":
    yield from synthetic.benchmark_videos(
        seed=d.seed, num_videos=d.num_videos, num_frames=d.num_frames, height=d.height,
        width=d.width, shuffled=d.shuffled, max_severity=d.max_severity)
  elif d.name == "vspw":
    from ttt_jax.data import vspw
    yield from vspw.iter_videos(d.root, split=d.split, limit=d.num_videos or None,
                                max_frames=d.num_frames or None, size=(d.height, d.width))
  elif d.name == "kitti_step":
    from ttt_jax.data import kitti_step
    yield from kitti_step.iter_videos(d.root, split=d.split, limit=d.num_videos or None,
                                      max_frames=d.num_frames or None, size=(d.height, d.width))
  elif d.name == "frames":
    from ttt_jax.data import frames
    yield from frames.iter_videos(d.root, size=(d.height, d.width), max_frames=d.num_frames or None)
  else:
    raise ValueError(f"unknown dataset {d.name!r}; expected synthetic, vspw, kitti_step or frames")
