"""Plots for runs: per-frame mIoU over time, and a strip of frames / labels / predictions."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# One colour per class id (tab10), ignore (255) in black.
_PALETTE = (np.array(plt.get_cmap("tab10").colors) * 255).astype(np.uint8)


def colourise(labels_HW) -> np.ndarray:
  """Class ids -> RGB uint8 (ignore = black)."""
  lab = np.asarray(labels_HW)
  out = _PALETTE[np.clip(lab, 0, len(_PALETTE) - 1) % len(_PALETTE)]
  out[lab == 255] = 0
  return out


def plot_per_frame_miou(curves: dict[str, np.ndarray], path, title="per-frame mIoU") -> Path:
  """`curves`: method -> per-frame mIoU (averaged over videos), one line each."""
  fig, ax = plt.subplots(figsize=(7, 3.5))
  for name, c in curves.items():
    ax.plot(np.arange(len(c)), 100 * np.asarray(c), label=name, lw=1.5)
  ax.set_xlabel("frame")
  ax.set_ylabel("mIoU (%)")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return Path(path)


def plot_strip(frames_THW3, gt_THW, preds: dict[str, np.ndarray], path, every: int = 8,
               max_cols: int = 6) -> Path:
  """Rows: frames, ground truth, then one row per method; columns: every `every`-th frame."""
  idx = list(range(0, len(frames_THW3), every))[:max_cols]
  rows = [("frame", [frames_THW3[i] for i in idx]), ("ground truth", [colourise(gt_THW[i]) for i in idx])]
  rows += [(name, [colourise(p[i]) for i in idx]) for name, p in preds.items()]
  fig, axes = plt.subplots(len(rows), len(idx), figsize=(1.6 * len(idx), 1.6 * len(rows)), squeeze=False)
  for r, (name, ims) in enumerate(rows):
    for c, im in enumerate(ims):
      ax = axes[r][c]
      ax.imshow(im, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if c == 0:
        ax.set_ylabel(name, fontsize=7)
      if r == 0:
        ax.set_title(f"t={idx[c]}", fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return Path(path)
