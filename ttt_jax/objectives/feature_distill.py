"""TTT-KD's distillation loss: point features projected into a frozen 2D teacher's
feature space, compared with the teacher features lifted onto the points.

The distance is the cosine distance `1 - cos(student, teacher)`, averaged over the
points some view sees (`projection.point_features` gives each point's view count;
points no image sees carry no loss). The paper does not state its distance. Cosine,
because DINOv2 patch-feature norms vary a lot across positions and images (a few
high-norm tokens), while the semantics live in the direction; 2D-to-3D feature
distillation (OpenScene) uses it for the same reason. `mse` (the mean squared error
of the raw vectors, which also matches their norms) is there for comparison.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

DISTANCES = ("cosine", "mse")


def feature_distill_loss(student_ND: jax.Array, teacher_ND: jax.Array, views_N: jax.Array,
                         valid_N: jax.Array | None = None, distance: str = "cosine") -> jax.Array:
  """Mean distance over the points seen by at least one view (0 if none is).

  Args:
    student_ND: the projector's output per point.
    teacher_ND: the lifted teacher feature per point (zeros where unseen).
    views_N: views that see each point (int); 0 = no loss.
    valid_N: the scene's validity mask (padding rows carry no loss), or None.
    distance: one of `DISTANCES`.
  """
  if distance not in DISTANCES:
    raise ValueError(f"unknown distillation distance {distance!r}; expected one of {DISTANCES}")
  seen = views_N > 0
  if valid_N is not None:
    seen = seen & valid_N
  s = student_ND.astype(jnp.float32)
  t = teacher_ND.astype(jnp.float32)
  if distance == "cosine":
    unit = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
    d = 1.0 - jnp.sum(unit(s) * unit(t), axis=-1)
  else:
    d = jnp.mean((s - t) ** 2, axis=-1)
  w = seen.astype(jnp.float32)
  return jnp.sum(d * w) / jnp.maximum(jnp.sum(w), 1.0)
