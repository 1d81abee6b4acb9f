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
# # Online TTT-MAE on a live stream
#
# A camera hands over one frame at a time and nobody knows how many will come.
# `Runner.stream` takes any iterator of frames and yields each frame's labels
# (and the adaptation loss) as soon as its tick is done: push the frame to the
# window, one optimizer step on masked reconstruction, predict. The program is
# the stream driver's, compiled once at the first frame; the state (parameters,
# AdamW's moments, the window) stays on the device between frames.
#
# Here the "camera" is a generator over a synthetic video with a drifting shift.
# Set `TTT_NOTEBOOK_TINY=1` for a seconds-long run (the tests do).

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np

from ttt_jax.cli.config_io import load_config_file
from ttt_jax.data.synthetic import VideoSpec, make_video
from ttt_jax.demo import config_path   # the installed configs/ (package data)
from ttt_jax.runner.run import make_runner
from ttt_jax.viz.overlay import overlay

TINY = os.environ.get("TTT_NOTEBOOK_TINY") == "1"
T, H, W = (6, 32, 32) if TINY else (48, 64, 64)
runner = make_runner(load_config_file(f"{config_path('online_ttt_mae')}:{'tiny' if TINY else 'demo'}"))[0]


def camera(seed=1002):
    """Frames one at a time, as a capture loop would deliver them."""
    frames_THWC, _, _ = make_video(VideoSpec(seed=seed, num_frames=T, height=H, width=W))
    for frame_HWC in frames_THWC:
        yield frame_HWC


# %% [markdown]
# Each frame's result arrives before the next frame is read. The first frame
# also pays for compiling the step.

# %%
shown, losses, latency = [], [], []
frames = camera()
t0 = time.perf_counter()
for t, (labels_HW, loss) in enumerate(runner.stream(frames)):
    latency.append(time.perf_counter() - t0)
    losses.append(loss)
    if t % max(T // 4, 1) == 0:
        shown.append((t, labels_HW))
    t0 = time.perf_counter()
print(f"{len(losses)} frames; first frame {latency[0]:.1f} s (compiling), then "
      f"{1 / np.median(latency[1:]):.1f} frames/s")

# %%
video = make_video(VideoSpec(seed=1002, num_frames=T, height=H, width=W))[0]
fig, axes = plt.subplots(1, len(shown) + 1, figsize=(3 * (len(shown) + 1), 3))
for ax, (t, labels_HW) in zip(axes, shown):
    ax.imshow(overlay(video[t], labels_HW)); ax.set_title(f"frame {t}"); ax.axis("off")
axes[-1].plot(losses, marker="o"); axes[-1].set_xlabel("frame"); axes[-1].set_title("reconstruction loss")
plt.tight_layout(); plt.show()
