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
# # TTT-KD: one scene, adapted step by step
#
# The shipped point model (PTv3 'demo' size with its class head and its projector to
# the teacher's feature space) was trained on the 'office' rooms. Here it meets a
# 'home' room (other furniture, warm dim light, a noisier, sparser scan with holes):
# the stand-in 2D teacher's features of the room's images (not DINOv2; see
# `ttt_jax/models/room_teacher.py`) are lifted onto the points the images see, and
# the backbone takes distillation steps on this scene alone. The class head never
# sees a label.
#
# Set `TTT_NOTEBOOK_TINY=1` for a seconds-long run on a tiny random model (the tests do).

# %%
import os

import jax
import matplotlib.pyplot as plt
import numpy as np

from ttt_jax.data import rooms
from ttt_jax.metrics.point_seg import IGNORE
from ttt_jax.metrics.segmentation import confusion, iou_from_confusion
from ttt_jax.methods.model_source import source_model
from ttt_jax.methods.point_defaults import point_config
from ttt_jax.runner.run import make_runner

TINY = os.environ.get("TTT_NOTEBOOK_TINY") == "1"
SIZE, N, STEPS = ("tiny", 1024, 3) if TINY else ("demo", 2048, 40)

# %% [markdown]
# The room: its point cloud (seen from above, coloured by the scan's colours and by
# class) and a few of its posed RGB-D images.

# %%
scene = rooms.make_scene("home", "test", 1, 0, SIZE)
p, v = scene.points, scene.views
palette = plt.get_cmap("tab10")(np.arange(10))[:, :3]

def top_down(ax, colours, title):
  order = np.argsort(p.coord_N3[:, 2])          # the highest points drawn last, as seen from above
  ax.scatter(p.coord_N3[order, 0], p.coord_N3[order, 1], c=colours[order], s=3)
  ax.set_aspect("equal"), ax.set_title(title), ax.axis("off")

fig, axes = plt.subplots(1, 5, figsize=(17, 3.5))
top_down(axes[0], p.color_N3 / 255, f"{p.scene_id}: {len(p.coord_N3)} points")
top_down(axes[1], palette[p.segment_N], "labels")
for ax, i in zip(axes[2:], range(3)):
  ax.imshow(v.color_VHW3[i]), ax.set_title(f"view {i}"), ax.axis("off")
plt.show()

# %% [markdown]
# TTT-KD-O at stride 1 on the same scene repeated: one distillation step per tick,
# carried, so tick t predicts after t + 1 steps. The loss is the cosine distance of
# the projected point features to the teacher's, over the points some image sees.

# %%
cfg = point_config("ttt_kd", name="ttt_kd_steps", stride=1)
cfg.engine.num_points = N
if TINY:   # a tiny random model: seconds to compile (the figures then mean nothing)
  cfg.model.checkpoint = "random"
runner, _ = make_runner(cfg)
labels, stats = runner.run_one("steps", [(p.scene_id, scene)] * STEPS, 0)

# Source only: the frozen model on the same tick data (padded points, levels).
tick = runner.plan.make_ticks(p.scene_id, scene)
src = source_model(cfg)
net, v = src.cfg.model(), src.variables
logits = jax.jit(lambda v, t: net.apply(v, t["feat_N6"][0], jax.tree.map(lambda x: x[0], t["levels"]),
                                         method="segment"))(v, tick)
before = np.asarray(logits.argmax(-1))[None]
n = len(p.coord_N3)
miou = lambda lab: iou_from_confusion(confusion(lab[:n], p.segment_N, rooms.NUM_CLASSES, ignore=IGNORE))["miou"]
curve = [miou(lab) for lab in labels]
print(f"source only: mIoU {100 * miou(before[0]):.2f}; after {STEPS} steps: {100 * curve[-1]:.2f}")

fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3))
a.plot(np.arange(1, STEPS + 1), stats["loss"]), a.set_xlabel("step"), a.set_ylabel("distillation loss")
b.plot(np.arange(1, STEPS + 1), 100 * np.array(curve), label="TTT-KD")
b.axhline(100 * miou(before[0]), color="grey", ls="--", label="source only")
b.set_xlabel("step"), b.set_ylabel("scene mIoU"), b.legend()
plt.show()

# %% [markdown]
# Predictions before and after, coloured by class.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
top_down(axes[0], palette[p.segment_N], "labels")
top_down(axes[1], palette[before[0][:n]], f"source only ({100 * miou(before[0]):.1f} mIoU)")
top_down(axes[2], palette[labels[-1][:n]], f"after {STEPS} TTT-KD steps ({100 * curve[-1]:.1f} mIoU)")
plt.show()
