"""`sam2-bridge`: build cached targets (SAM2 or optical flow) and DINOv2 features.

    sam2-bridge targets --video FRAMES --probs ISS_PROBS.npy --out CACHE.npz \
        [--propagator flow|sam2|oracle --sam2-config CFG --sam2-checkpoint PT --image-size 1024]
  (oracle: synthetic videos only, from the generator's instances that `ttt-jax export`
  writes as EXPORT/<video>/instances.npy; a perfect segmenter, never a default)
    sam2-bridge targets --export-dir EXPORT --out-dir CACHE_DIR [...]   # every video
    sam2-bridge features --video FRAMES --model DINOV2_DIR --out CACHE.npz
    sam2-bridge features --export-dir EXPORT --model DINOV2_DIR --out-dir CACHE_DIR
    sam2-bridge boxes --images IMAGES.npy --boxes BOXES.npy --out CACHE.npz \
        [--sam2-config CFG --sam2-checkpoint PT --image-size 1024]   # CAST: SAM2 masks of boxes

FRAMES is a folder of frames or a uint8 T x H x W x 3 `.npy`; ISS_PROBS the image
model's class probabilities on the warm-up frames (float, W x H x W x C), as
`ttt-jax export` writes them (EXPORT/<video>/frames.npy, iss_probs.npy); the
ISS model's digest beside them (iss_model.sha256) goes into the cache. A batch
run skips videos whose cache exists (resume after a kill).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sam2_bridge import cache_schema
from sam2_bridge.video_io import read_video, video_shape

_VERSIONED = ("numpy", "torch", "sam2", "transformers", "opencv-python-headless")


def versions() -> dict:
  return cache_schema.library_versions(_VERSIONED)


def make_propagator(a):
  if a.propagator == "flow":
    from sam2_bridge.propagators import FlowPropagator
    prop = FlowPropagator()
    return prop, prop.teacher_digest()
  if a.propagator == "sam2":
    from sam2_bridge.sam2_propagator import SAM2Propagator
    prop = SAM2Propagator(a.sam2_config, a.sam2_checkpoint, image_size=a.image_size,
                          device=a.device, seed=a.seed)
    digest = (cache_schema.checkpoint_digest(a.sam2_checkpoint) if a.sam2_checkpoint
              else f"random-weights-seed{a.seed}")
    return prop, digest
  if a.propagator == "oracle":
    return None, None  # one per video: see _oracle_for
  raise SystemExit(f"unknown propagator {a.propagator!r}; expected flow, sam2 or oracle")


def _oracle_instances(video: Path) -> Path:
  path = video.parent / "instances.npy"
  if not path.is_file():
    raise SystemExit(f"--propagator oracle needs {path} (synthetic videos exported by `ttt-jax export`)")
  return path


def _oracle_for(video: Path):
  from sam2_bridge.propagators import OraclePropagator
  prop = OraclePropagator(np.load(_oracle_instances(video)))
  return prop, prop.teacher_digest()


def _jobs(a, needs_probs: bool):
  """(video path, probs path or None, out path) for a single video or an export folder."""
  if a.export_dir:
    if not a.out_dir:
      raise SystemExit("--export-dir needs --out-dir")
    root = Path(a.export_dir)
    vids = sorted(d for d in root.iterdir() if (d / "frames.npy").is_file()) if root.is_dir() else []
    if not vids:
      raise SystemExit(f"{root}: no <video>/frames.npy inside (write it with `ttt-jax export`)")
    return [(v / "frames.npy", v / "iss_probs.npy" if needs_probs else None,
             Path(a.out_dir) / f"{v.name}.npz") for v in vids]
  if not a.video or not a.out or (needs_probs and not a.probs):
    raise SystemExit("give --video, --out" + (" and --probs" if needs_probs else "") + ", or --export-dir")
  return [(Path(a.video), Path(a.probs) if needs_probs else None, Path(a.out))]


def _load_probs(path: Path, mmap: bool = False) -> np.ndarray:
  if not path.is_file():
    raise FileNotFoundError(f"ISS probabilities {path} do not exist")
  return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def _preflight(video: Path, probs_path: Path, mode: str):
  """Frame count and size against the probabilities, without reading the video whole."""
  from sam2_bridge.targets import check_probs, check_warmup_probs
  probs = _load_probs(probs_path, mmap=True)
  shape = video_shape(video)
  if len(shape) != 4:
    raise ValueError(f"video {video}: expected T x H x W x 3 frames, got shape {shape}")
  if mode == "ditta":
    check_warmup_probs(shape, probs)
  else:
    check_probs(shape, probs[:1], 1)


def cmd_targets(a):
  from sam2_bridge.targets import PromptConfig, write_targets
  pcfg = PromptConfig(threshold=a.threshold, dilate=a.dilate, max_objects=a.max_objects)
  # Resume: finished videos stay; every input is checked before any propagation starts.
  jobs = [j for j in _jobs(a, needs_probs=True) if not (a.export_dir and j[2].exists())]
  for video, probs_path, _ in jobs:
    _preflight(video, probs_path, a.mode)
    if a.propagator == "oracle":
      _oracle_instances(video)
  prop, digest = make_propagator(a)  # builds/loads SAM2 (checks config and checkpoint first)
  for video, probs_path, out in jobs:
    if a.propagator == "oracle":
      prop, digest = _oracle_for(video)
    arrays, secs = write_targets(out, prop, digest, read_video(video), _load_probs(probs_path),
                                 mode=a.mode, cfg=pcfg, versions=versions(),
                                 iss_digest=cache_schema.read_iss_digest(probs_path))
    print(f"wrote {out}: {arrays['masks'].shape[1]} objects on {arrays['masks'].shape[0]} frames "
          f"({secs:.1f} s, {prop.name})")


def cmd_features(a):
  from sam2_bridge.features import extract_features, load_dinov2
  jobs = [j for j in _jobs(a, needs_probs=False) if not (a.export_dir and j[2].exists())]
  model = load_dinov2(a.model, a.device)
  digest = cache_schema.checkpoint_digest(a.model)
  size = tuple(a.size) if a.size else None
  for video, _, out in jobs:
    frames = read_video(video)
    feats, secs = extract_features(model, frames, size=size, batch=a.batch)
    cache_schema.write_cache(out, "features", {"features": feats},
                             video_digest=cache_schema.video_digest(frames), teacher="dinov2",
                             teacher_digest=digest, params={"size": size, "seconds": secs},
                             versions=versions())
    print(f"wrote {out}: features {feats.shape} ({secs:.1f} s)")


def cmd_boxes(a):
  from sam2_bridge.box_refine import refine_boxes
  from sam2_bridge.sam2_propagator import SAM2Propagator
  images, boxes = np.load(a.images), np.load(a.boxes)
  prop = SAM2Propagator(a.sam2_config, a.sam2_checkpoint, image_size=a.image_size, device=a.device, seed=a.seed)
  masks = refine_boxes(prop, images, boxes)
  digest = cache_schema.checkpoint_digest(a.sam2_checkpoint) if a.sam2_checkpoint else f"random-weights-seed{a.seed}"
  cache_schema.write_cache(a.out, "box_masks", {"masks": masks, "boxes": boxes.astype(np.float32)},
                           video_digest=cache_schema.video_digest(images), teacher=prop.name,
                           teacher_digest=digest, params=prop.params(), versions=versions())
  print(f"wrote {a.out}: {int(np.isfinite(boxes).all(-1).sum())} box masks for {len(images)} images")


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="sam2-bridge", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = p.add_subparsers(dest="cmd", required=True)
  for name, fn in (("targets", cmd_targets), ("features", cmd_features)):
    s = sub.add_parser(name)
    s.add_argument("--video")
    s.add_argument("--out")
    s.add_argument("--export-dir")
    s.add_argument("--out-dir")
    s.add_argument("--device", default="cpu")
    s.set_defaults(fn=fn)
    if name == "targets":
      s.add_argument("--probs")
      s.add_argument("--mode", choices=("ditta", "zero_shot"), default="ditta")
      s.add_argument("--propagator", choices=("flow", "sam2", "oracle"), default="flow")
      s.add_argument("--sam2-config", default="configs/sam2.1/sam2.1_hiera_l.yaml")
      s.add_argument("--sam2-checkpoint", help="omit for random weights (tests only)")
      s.add_argument("--image-size", type=int, default=1024)
      s.add_argument("--seed", type=int, default=0)
      s.add_argument("--threshold", type=float, default=0.8)
      s.add_argument("--dilate", type=int, default=5)
      s.add_argument("--max-objects", type=int, default=100)
    else:
      s.add_argument("--model", required=True, help="local DINOv2 folder (save_pretrained layout)")
      s.add_argument("--size", type=int, nargs=2, metavar=("H", "W"))
      s.add_argument("--batch", type=int, default=8)
  s = sub.add_parser("boxes", help="SAM2 masks of boxes (CAST's pseudo-labels)")
  s.add_argument("--images", required=True, help="uint8 N x H x W x 3 .npy (CAST writes unlabelled_images.npy)")
  s.add_argument("--boxes", required=True, help="float32 N x G x 4 .npy, x0 y0 x1 y1 pixels, NaN = none")
  s.add_argument("--out", required=True)
  s.add_argument("--sam2-config", default="configs/sam2.1/sam2.1_hiera_l.yaml")
  s.add_argument("--sam2-checkpoint", help="omit for random weights (tests only)")
  s.add_argument("--image-size", type=int, default=1024)
  s.add_argument("--seed", type=int, default=0)
  s.add_argument("--device", default="cpu")
  s.set_defaults(fn=cmd_boxes)
  return p


def main(argv=None):
  a = parser().parse_args(argv)
  try:
    a.fn(a)
  except (FileNotFoundError, ValueError) as e:
    print(f"sam2-bridge {a.cmd}: error: {e}", file=sys.stderr)
    raise SystemExit(2) from e


if __name__ == "__main__":
  main()
