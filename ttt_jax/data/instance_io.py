"""Instance predictions and ground truth on disk: one `<image_id>.npz` per image with
`masks_NHW` (bool), `labels_N` (int32 class ids) and, for predictions, `scores_N`.
Written whole (`io.files.save_npz`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ttt_jax.io.files import save_npz


def write_instances(path, masks_NHW, labels_N, scores_N=None) -> None:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = {"masks_NHW": np.asarray(masks_NHW, bool), "labels_N": np.asarray(labels_N, np.int32)}
  if scores_N is not None:
    arrays["scores_N"] = np.asarray(scores_N, np.float32)
  save_npz(path, **arrays)


def read_instances(path, need_scores: bool = False) -> dict[str, np.ndarray]:
  with np.load(path) as z:
    keys = {"masks_NHW", "labels_N"} | ({"scores_N"} if need_scores else set())
    missing = sorted(keys - set(z.files))
    if missing:
      raise ValueError(f"{path}: no {missing}; expected an instance file with {sorted(keys)}")
    out = {k: z[k] for k in z.files}
  if out["masks_NHW"].ndim != 3 or len(out["masks_NHW"]) != len(out["labels_N"]):
    raise ValueError(f"{path}: masks_NHW {out['masks_NHW'].shape} do not go with labels_N {out['labels_N'].shape}")
  return out
