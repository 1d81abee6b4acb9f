"""`ttt-jax evaluate PRED_DIR GT_DIR`: score VSPW-style PNG folders, or (`--instances`)
instance predictions by mask AP (`evaluate_instance_folders`).

PRED_DIR/<video>/<frame>.png hold predicted class ids. GT_DIR is either the same
style (GT_DIR/<video>/<frame>.png, class ids, 255 ignore) or a VSPW data folder
(GT_DIR/<video>/mask/<frame>.png, raw VSPW labels, mapped with `vspw.map_labels`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ttt_jax.data import vspw
from ttt_jax.data.image_io import read_png
from ttt_jax.metrics.segmentation import Accumulator


def _gt_files(gt_dir: Path, video: str):
  d = gt_dir / video
  if (d / "mask").is_dir():
    return sorted((d / "mask").glob("*.png")), vspw.map_labels
  return sorted(d.glob("*.png")), lambda x: x


def evaluate_folders(pred_dir, gt_dir, num_classes: int | None = None) -> dict:
  pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
  videos = sorted(p.name for p in pred_dir.iterdir() if p.is_dir()) if pred_dir.is_dir() else []
  if not videos:
    raise FileNotFoundError(f"no video folders in {pred_dir}")
  data = []
  for v in videos:
    gfiles, mapper = _gt_files(gt_dir, v)
    if not gfiles:
      raise FileNotFoundError(f"no ground truth for video {v} in {gt_dir / v}")
    pfiles = sorted((pred_dir / v).glob("*.png"))
    gnames, pnames = [f.stem for f in gfiles], [f.stem for f in pfiles]
    if gnames != pnames:
      missing = sorted(set(gnames) - set(pnames))[:5]
      extra = sorted(set(pnames) - set(gnames))[:5]
      raise ValueError(f"video {v}: prediction frames in {pred_dir / v} do not match ground truth in "
                       f"{gt_dir / v} (missing {missing}, unexpected {extra})")
    gt = np.stack([mapper(read_png(f)) for f in gfiles])
    pred = np.stack([read_png(f) for f in pfiles])
    if pred.shape != gt.shape:
      bad = next(p for p, g in zip(pfiles, gt) if read_png(p).shape != g.shape)
      raise ValueError(f"prediction {bad} has shape {read_png(bad).shape}, ground truth {gt.shape[1:]}")
    data.append((v, pred, gt))
  if num_classes is None:
    num_classes = int(max(g[g != 255].max(initial=0) for _, _, g in data)) + 1
  acc = Accumulator(num_classes)
  for v, p, g in data:
    acc.add(v, p, g)
  s = acc.summary()
  return {"num_classes": num_classes, "videos": len(data),
          **{k: s[k] for k in ("miou", "wiou", "mvc8", "mvc16")},
          "per_video": {v: {k: r[k] for k in ("miou", "wiou", "mvc8", "mvc16", "frames")}
                        for v, r in s["per_video"].items()}}


def format_table(res: dict) -> str:
  lines = [f"{'video':<24} {'frames':>6} {'mIoU':>6} {'wIoU':>6} {'mVC8':>6} {'mVC16':>6}"]
  for v, r in res["per_video"].items():
    lines.append(f"{v:<24} {r['frames']:6d} {100 * r['miou']:6.2f} {100 * r['wiou']:6.2f} "
                 f"{100 * r['mvc8']:6.2f} {100 * r['mvc16']:6.2f}")
  lines.append(f"{'dataset':<24} {'':6} {100 * res['miou']:6.2f} {100 * res['wiou']:6.2f} "
               f"{100 * res['mvc8']:6.2f} {100 * res['mvc16']:6.2f}")
  return "\n".join(lines)


def evaluate_instance_folders(pred_dir, gt, num_classes: int | None = None) -> dict:
  """Mask AP / AP50 of `PRED_DIR/<image_id>.npz` predictions (`data.instance_io`)
  against a folder of ground-truth `<image_id>.npz` files or a Cityscapes root (its
  val split, image ids as the file names' stems)."""
  from ttt_jax.data import instance_io
  from ttt_jax.metrics.mask_ap import mask_ap
  pred_dir, gt = Path(pred_dir), Path(gt)
  if (gt / "gtFine").is_dir():
    from ttt_jax.data.cityscapes import CLASSES, read_cityscapes
    truth = {im.image_id: (im.masks_NHW, im.labels_N) for im in read_cityscapes(gt, "val")}
    num_classes = num_classes or len(CLASSES)
  else:
    files = sorted(gt.glob("*.npz"))
    if not files:
      raise FileNotFoundError(f"no ground-truth <image_id>.npz files (or gtFine/) in {gt}")
    truth = {f.stem: tuple(instance_io.read_instances(f)[k] for k in ("masks_NHW", "labels_N")) for f in files}
  preds = {f.stem: f for f in sorted(pred_dir.glob("*.npz"))}
  if not preds:
    raise FileNotFoundError(f"no prediction <image_id>.npz files in {pred_dir}")
  missing, extra = sorted(set(truth) - set(preds))[:5], sorted(set(preds) - set(truth))[:5]
  if missing or extra:
    raise ValueError(f"predictions in {pred_dir} do not match the ground truth in {gt} (missing {missing}, "
                     f"unexpected {extra})")
  if num_classes is None:
    num_classes = int(max((l.max(initial=-1) for _, l in truth.values()), default=-1)) + 1
  gts, ps = [], []
  for k in sorted(truth):
    p = instance_io.read_instances(preds[k], need_scores=True)
    gts.append(truth[k])
    ps.append((p["masks_NHW"], p["labels_N"], p["scores_N"]))
  return {"num_classes": num_classes, **mask_ap(gts, ps, num_classes)}
