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
# # Online TTT-MAE as one jitted `lax.scan`
#
# The parameters are the hidden state of a recurrent network: before predicting
# frame t, one optimizer step on masked-image reconstruction over the last k
# frames, starting from the weights left by frame t-1. Here we run the shipped
# small source model over a held-out synthetic video with and without that
# update and plot per-frame mIoU.
#
# Set `TTT_NOTEBOOK_TINY=1` for a seconds-long run (the tests do).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from ttt_jax.data.synthetic import VideoSpec, make_video
from ttt_jax.cli.config_io import load_config_file
from ttt_jax.demo import config_path   # the installed configs/ (package data)
from ttt_jax.runner.run import make_runner
from ttt_jax.metrics.segmentation import per_frame_miou
from ttt_jax.viz.plots import colourise

TINY = os.environ.get("TTT_NOTEBOOK_TINY") == "1"
T, H, W = (6, 32, 32) if TINY else (48, 64, 64)

# %% [markdown]
# A held-out video: moving camera and objects, with a drifting mix of noise,
# blur, fog, darkness and compression.

# %%
frames_THWC, labels_THW, severity = make_video(VideoSpec(seed=1001, num_frames=T, height=H, width=W))
fig, axes = plt.subplots(2, 4, figsize=(8, 4))
for i, t in enumerate(np.linspace(0, T - 1, 4).astype(int)):
    axes[0, i].imshow(frames_THWC[t]); axes[0, i].set_title(f"t={t}"); axes[0, i].axis("off")
    axes[1, i].imshow(colourise(labels_THW[t])); axes[1, i].axis("off")
plt.show()


# %% [markdown]
# One runner per method config (`configs/<name>.py:demo`, or `:tiny` here at the test
# size). `run_one(..., driver="scan")` builds the tick schedule of the memory mode and
# runs the video as compiled `lax.scan`s whose carry is the train state (`TTTState`:
# parameters, statistics, optimizer state, ring buffer, runtime settings, key).

# %%
def runner(config):
    return make_runner(load_config_file(f"{config_path(config)}:{'tiny' if TINY else 'demo'}"))[0]


curves, preds = {}, {}
for name, config in [("main task", "main_task"), ("online TTT-MAE", "online_ttt_mae")]:
    r = runner(config)
    preds[name], stats = r.run_one("video", frames_THWC, 0, driver="scan")
    curves[name] = per_frame_miou(preds[name], labels_THW, 8)
    print(f"{name}: mean per-frame mIoU {100 * np.nanmean(curves[name]):.2f}  ({stats})")

# %% [markdown]
# The state is a pytree: the same step also runs frame by frame (`stream`), for
# frames that arrive live, and gives the same predictions.

# %%
r = runner("online_ttt_mae")
stream = [lab for lab, _ in r.stream(iter(frames_THWC), 0)]   # frames one at a time
print("stream == scan:", np.array_equal(np.stack(stream), preds["online TTT-MAE"]))

# %%
plt.figure(figsize=(7, 3))
for name, c in curves.items():
    plt.plot(100 * c, label=name)
plt.plot(100 * severity.max(1), "k:", label="shift severity (max)")
plt.xlabel("frame"); plt.ylabel("mIoU (%)"); plt.legend(); plt.grid(alpha=0.3)
plt.show()
