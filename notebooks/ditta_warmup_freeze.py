# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # DiTTA: distilled warm-up, then frozen
#
# On one held-out synthetic video: the image model's (ISS) probabilities on the
# warm-up frames place point prompts; a propagator (here the optical-flow one,
# which needs no weights; `sam2-bridge targets --propagator sam2` for SAM2) turns
# them into object masks, which are scored and painted into targets; the decode
# head, the temporal add-on and the projection head adapt for 5 passes over the
# warm-up frames; then the model is frozen and predicts the rest.
#
# Set `TTT_NOTEBOOK_TINY=1` for a seconds-long run (the tests do).

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from sam2_bridge.propagators import FlowPropagator
from sam2_bridge.targets import write_targets
from ttt_jax.checkpoint.model_io import variables_digest
from ttt_jax.data.synthetic import VideoSpec, make_video
from ttt_jax.engine.schedule import warmup_frames
from ttt_jax.methods import ditta_targets as painting
from ttt_jax.methods.defaults import SYNTHETIC_DITTA, ditta_config
from ttt_jax.methods.ditta import iss_probs_fn
from ttt_jax.methods.model_source import source_model
from ttt_jax.methods.segformer_task import SegTask
from ttt_jax.runner.run import make_runner
from ttt_jax.metrics.segmentation import per_frame_miou
from ttt_jax.viz.plots import colourise

TINY = os.environ.get("TTT_NOTEBOOK_TINY") == "1"
T, H, W, P = (6, 32, 32, 0.5) if TINY else (48, 64, 64, 0.1)
tmp = Path(tempfile.mkdtemp())

# %% [markdown]
# The video and the ISS model's probabilities on the warm-up frames (what
# `ttt-jax export` writes for the bridge).

# %%
frames_THWC, labels_THW, _ = make_video(VideoSpec(seed=2001, num_frames=T, height=H, width=W))
cfg = ditta_config(warmup=P, targets_dir=str(tmp))
cfg.update_from_flattened_dict(SYNTHETIC_DITTA)      # lr 1e-4, add-on radius 1 for 64 px frames
cfg.data.num_frames, cfg.data.height, cfg.data.width = T, H, W
model = source_model(cfg)
n_warm = warmup_frames(T, P)
probs = iss_probs_fn(SegTask(model.cfg), model.variables)(frames_THWC[:n_warm])
print(f"{T} frames, warm-up {n_warm}; probabilities {probs.shape}")

# %% [markdown]
# Targets: prompts at reliability peaks, forward and backward propagation, then
# class scores and painting (highest score on top; white = ignored).

# %%
prop = FlowPropagator()
arrays, _ = write_targets(tmp / "video.npz", prop, prop.teacher_digest(), frames_THWC, probs, mode="ditta",
                          iss_digest=variables_digest(model.variables))   # the run checks it is its model
cls_map, obj_map, scores = painting.distillation_targets(arrays["masks"], probs)
print(f"{arrays['masks'].shape[1]} objects, prompted on frames {arrays['prompt_frames'].tolist()}")
fig, ax = plt.subplots(3, n_warm, figsize=(2 * n_warm, 6), squeeze=False)
for t in range(n_warm):
    ax[0, t].imshow(frames_THWC[t]); ax[0, t].set_title(f"t={t}")
    for x, y in arrays["prompt_points"][arrays["prompt_frames"] == t]:
        ax[0, t].plot(x, y, "r+", ms=10)
    ax[1, t].imshow(np.where(obj_map[t] == 255, 0, obj_map[t] + 1), cmap="tab20"); ax[1, t].set_title("objects")
    ax[2, t].imshow(colourise(np.where(cls_map[t] == 255, 0, cls_map[t])))
    ax[2, t].imshow(np.where(cls_map[t] == 255, 1.0, np.nan), cmap="gray", vmin=0, vmax=1)
    ax[2, t].set_title("targets")
for a in ax.ravel():
    a.axis("off")
plt.tight_layout(); plt.show()

# %% [markdown]
# Adapt on the warm-up frames, then predict every frame frozen; compare with the
# ISS model frame by frame (only frames after the warm-up are scored).

# %%
after, _ = make_runner(cfg, model)[0].run_one("video", frames_THWC, 0)
iss_cfg = ditta_config(warmup=P, kind="none", name="iss")
before, _ = make_runner(iss_cfg, model)[0].run_one("video", frames_THWC, 0)
m_before = per_frame_miou(before, labels_THW, 8)[n_warm:]
m_after = per_frame_miou(after, labels_THW, 8)[n_warm:]
print(f"mIoU after the warm-up: ISS {100 * np.nanmean(m_before):.1f}, DiTTA {100 * np.nanmean(m_after):.1f}")
plt.figure(figsize=(6, 3))
plt.plot(range(n_warm, T), 100 * m_before, label="ISS")
plt.plot(range(n_warm, T), 100 * m_after, label="DiTTA (frozen)")
plt.xlabel("frame"); plt.ylabel("mIoU"); plt.legend(); plt.tight_layout(); plt.show()

# %%
show = np.linspace(n_warm, T - 1, 4).astype(int)
fig, ax = plt.subplots(4, 4, figsize=(8, 8))
for i, t in enumerate(show):
    for r, (img, name) in enumerate([(frames_THWC[t], "frame"), (colourise(labels_THW[t]), "truth"),
                                     (colourise(before[t]), "ISS"), (colourise(after[t]), "DiTTA")]):
        ax[r, i].imshow(img); ax[r, i].set_title(f"{name} t={t}"); ax[r, i].axis("off")
plt.tight_layout(); plt.show()
