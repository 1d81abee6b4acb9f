"""`ttt-jax export`: what the bridge needs to build DiTTA targets, per video.

    EXPORT/<video_id>/frames.npy     uint8 T x H x W x 3 (the frames the run will see)
    EXPORT/<video_id>/iss_probs.npy  float32 W x H x W x C, the source (ISS) model's
                                     class probabilities on the W warm-up frames
    EXPORT/<video_id>/iss_model.sha256  that model's weights digest (the bridge copies
                                     it into the targets cache; DiTTA runs check it)
    EXPORT/<video_id>/instances.npy  int32 T x H x W, synthetic videos only: the
                                     generator's objects, for the oracle propagator

Each file is written atomically; videos already exported by the same model are
skipped (resume); one exported by another model is an error.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sam2_bridge import cache_schema
from ttt_jax.checkpoint.model_io import variables_digest
from ttt_jax.data import synthetic
from ttt_jax.data.datasets import load_videos
from ttt_jax.engine.schedule import warmup_frames
from ttt_jax.io.files import atomic_write_bytes, save_npy
from ttt_jax.methods.ditta import iss_probs_fn
from ttt_jax.methods.model_source import load_source_model
from ttt_jax.methods.segformer_task import SegTask, check_frame_size


def export(config, out_dir, *, progress: bool = True) -> list[str]:
  """Writes frames and warm-up ISS probabilities of every video; returns the video ids."""
  out = Path(out_dir)
  d, m = config.data, config.method
  variables, model_cfg, _ = load_source_model(config.model, num_classes=d.num_classes)
  task = SegTask(model_cfg)
  probs = iss_probs_fn(task, variables)
  digest = variables_digest(variables)
  ids = []
  for vid, frames, _ in tqdm(load_videos(d), desc="export", disable=not progress, unit="video"):
    ids.append(vid)
    vdir = out / vid
    done = cache_schema.read_iss_digest(vdir / "iss_probs.npy")
    if done is not None and done != digest:
      raise ValueError(f"{vdir} was exported with another ISS model (weights sha256 {done[:12]}..., "
                       f"this model {digest[:12]}...); remove it or export to another folder")
    if done is not None and (vdir / "iss_probs.npy").is_file() and (vdir / "frames.npy").is_file():
      continue
    check_frame_size(model_cfg, *frames.shape[1:3], what=f"video {vid}")
    vdir.mkdir(parents=True, exist_ok=True)
    w = warmup_frames(len(frames), m.warmup_fraction)
    save_npy(vdir / "frames.npy", np.ascontiguousarray(frames, np.uint8))
    save_npy(vdir / "iss_probs.npy", probs(frames[:w]).astype(np.float32))
    if d.name == "synthetic":  # what the generator knows, for the oracle propagator only
      save_npy(vdir / "instances.npy", synthetic.benchmark_instances(
          vid, num_frames=d.num_frames, height=d.height, width=d.width, shuffled=d.shuffled,
          max_severity=d.max_severity))
    atomic_write_bytes(vdir / cache_schema.ISS_DIGEST_FILE, digest.encode())  # last: marks done
  if not ids:
    raise ValueError(f"dataset {d.name!r} yielded no videos")
  return ids
