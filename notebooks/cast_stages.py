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
# # CAST: pixel contrast, pseudo-labels, and a student distilled from its teacher
#
# CAST adapts a large teacher on a few labelled images (10% here), lets it label the
# rest, and distils it into a compact student under one objective: the set loss on
# labels, the set loss on the teacher's pseudo-labels, and an instance-aware pixel
# contrast between a weak and a strong view of every image.
#
# This notebook runs the three stages on the synthetic instance benchmark
# (`configs/cast.py`; a finished run in `CAST_OUT` is read, not rerun), then looks
# inside: a batch's views, the negatives one anchor pixel draws, and the student's
# instances before and after distillation.
#
# Set `TTT_NOTEBOOK_TINY=1` for a tiny, seconds-long run (the tests do, on the
# tiny run their CAST test made; its figures mean nothing).

# %%
import os

import jax
import matplotlib.pyplot as plt
import numpy as np

from ttt_jax.checkpoint.model_io import load_model
from ttt_jax.cli.config_io import load_config_file
from ttt_jax.data.instance_sets import load_sets
from ttt_jax.methods.cast_views import strong_view
from ttt_jax.methods.instance_augment import augment_instances
from ttt_jax.models.inputs import normalise
from ttt_jax.models.instance_seg import InstanceSeg
from ttt_jax.objectives import pixel_contrast as pc
from ttt_jax.train import cast

TINY = os.environ.get("TTT_NOTEBOOK_TINY") == "1"
c = load_config_file("configs/cast.py:tiny" if TINY else "configs/cast.py") if os.path.isdir("configs") else None
if c is None:   # run from elsewhere: the installed configs
  from importlib import resources
  c = load_config_file(str(resources.files("ttt_jax.configs") / "cast.py") + (":tiny" if TINY else ""))
OUT = os.environ.get("CAST_OUT", "cast_notebook_out")

# %% [markdown]
# ## The three stages
# Each stage checkpoints with orbax and resumes; its model is scored on the
# validation images by COCO mask AP (pycocotools).

# %%
results = cast.run_cast(c, OUT, progress=not TINY)
for stage in cast.STAGES:
  r = results[stage]
  speed = f"{r['steps_per_s']:.2f} steps/s" if r.get("steps_per_s") else "resumed"
  print(f"{stage:<13} mask AP {100 * r['ap']:6.2f}  AP50 {100 * r['ap50']:6.2f}  {speed}")

# %% [markdown]
# ## Weak and strong views
# Every training image is first augmented as Mask2Former's reference trains: scaled
# by 0.5 to 2 (a window of it enlarged, or all of it shrunk onto a mean-grey canvas),
# colour-jittered and flipped; that is the weak view, and its targets move with it.
# The strong view then changes colour, grey level and sharpness, never geometry, so
# a pixel is the same point of the scene in both: its own positive.

# %%
sets = load_sets(c)
unlabelled = sets["unlabelled"]["images_NHW3"][:4]
n = len(unlabelled)
no_targets = (np.full((n, 1), -1, np.int32), np.zeros((n, 1, *unlabelled.shape[1:3]), bool))
weak, _, _ = augment_instances(jax.random.key(0), unlabelled, *no_targets, cast.augment_config(c))
weak = np.asarray(weak)
strong = np.asarray(strong_view(jax.random.key(1), weak))
fig, axes = plt.subplots(3, len(weak), figsize=(3 * len(weak), 9))
for i in range(len(weak)):
  for row, (name, x) in enumerate((("image", unlabelled[i]), ("weak", weak[i]), ("strong", strong[i]))):
    axes[row, i].imshow(np.clip(x, 0, 255).astype(np.uint8)), axes[row, i].set_title(name), axes[row, i].axis("off")
plt.show()

# %% [markdown]
# ## The negatives of one anchor
# The student's own detached predictions give each pixel a pseudo-probability (a
# distribution over its instances and the expected class). Negatives come from the
# other images, drawn in proportion to how unlike the anchor's they are (Gumbel
# top-k): pixels of other instances and classes, rarely the anchor's own kind.

# %%
student, scfg, _ = load_model(os.path.join(OUT, "student", "model"), "instance_seg")
model = InstanceSeg(scfg)
out = jax.jit(lambda v, x: model.apply(v, normalise(x)))(student, weak)
z_s = jax.jit(lambda v, x: model.apply(v, normalise(x), method=InstanceSeg.embed))(student, strong)
k = min(c.contrast.num_negatives, 3 * out["embed_BhwE"].shape[1] * out["embed_BhwE"].shape[2])
ccfg = pc.ContrastConfig(num_negatives=k, temperature=c.contrast.temperature)
loss, info = pc.pixel_contrast_loss(jax.random.key(1), out["embed_BhwE"], z_s, out["class_LBQK"][-1],
                                    out["mask_LBQhw"][-1], 0, ccfg)
h, w = out["embed_BhwE"].shape[1:3]
stride = weak.shape[1] / h
anchor, negs = int(info["anchor"]), np.asarray(info["negatives"])
fig, axes = plt.subplots(1, len(weak), figsize=(3 * len(weak), 3))
for i in range(len(weak)):
  axes[i].imshow(weak[i].astype(np.uint8)), axes[i].axis("off")
  sel = negs[negs // (h * w) == i] % (h * w)
  axes[i].scatter((sel % w + 0.5) * stride, (sel // w + 0.5) * stride, s=12, c="cyan", label="negatives")
  if anchor // (h * w) == i:
    a = anchor % (h * w)
    axes[i].scatter([(a % w + 0.5) * stride], [(a // w + 0.5) * stride], s=80, c="red", marker="*", label="anchor")
  axes[i].set_title(f"image {i}: {len(sel)} negatives")
axes[0].legend(loc="lower left", fontsize=7)
print(f"pixel contrast on this batch: {float(loss):.3f}")
plt.show()

# %% [markdown]
# ## The student's instances before and after distillation
# Before: the student's starting weights. After: the distilled student and the
# refined one. Instances scoring above 0.3 are drawn, each its own colour.

# %%
val = sets["val"][:3]
images = np.stack([im.image_HW3 for im in val])
start, _ = cast.initial_variables(c, "student")
refined, _, _ = load_model(os.path.join(OUT, "refine", "model"), "instance_seg")
rows = {"ground truth": [(im.masks_NHW, im.labels_N, np.ones(len(im.labels_N))) for im in val]}
for name, v in (("student, start", start), ("student, distilled", student), ("student, refined", refined)):
  rows[name] = cast.predict_instances(v, scfg, images, len(images))
colours = plt.get_cmap("tab20")(np.arange(20))[:, :3]
fig, axes = plt.subplots(len(val), len(rows), figsize=(3 * len(rows), 3 * len(val)), squeeze=False)
for j, (name, preds) in enumerate(rows.items()):
  for i, (m, l, s) in enumerate(preds):
    canvas = images[i].astype(np.float32) / 255 * 0.4
    for n, (mask, score) in enumerate(zip(m, s)):
      if score > 0.3:
        canvas[mask] = 0.4 * canvas[mask] + 0.6 * colours[n % 20]
    axes[i, j].imshow(canvas), axes[i, j].axis("off")
    axes[i, j].set_title(f"{name}\n{int((np.asarray(s) > 0.3).sum())} instances", fontsize=8)
plt.show()
