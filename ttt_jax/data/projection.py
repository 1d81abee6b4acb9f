"""2D to 3D: the pixels of posed RGB-D images that the points of a scene land on,
and the image features each point gets (TTT-KD's distillation targets).

Conventions, ScanNet's:
- `cam_to_world_44`: camera-to-world rigid transform; camera frame x right, y down,
  z forward; metres.
- `K_33`: pinhole intrinsics in pixels of the image they belong to; pixel (u, v) is
  (column, row) with pixel centres at integers, so the top-left pixel spans
  [-0.5, 0.5) in both.
- depth maps in metres, 0 where the sensor measured nothing.

Visibility: a view sees a point when the point is in front of the camera, projects
inside the depth image, the depth map has a measurement at that pixel (nearest), and
the measurement is within `tolerance` metres of the point's own depth. The default,
0.1 m, covers ScanNet's depth noise (about 1 cm at 1 m, 2-3 cm at 4 m) and its pose
drift of a few centimetres, while an occluder thicker than 10 cm (a table top, a
chair back, a wall) still hides what lies behind it.

Features: a view's feature map (`h, w, C`, e.g. DINOv2's patch grid) covers its colour
image (`H, W` pixels, intrinsics `K`); a point's feature is read bilinearly at its
projected position, edges clamped. A point's target is the mean over the views that
see it; points no view sees get zeros and a count of 0 (no distillation loss).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def world_to_camera(points_N3: jax.Array, cam_to_world_44: jax.Array) -> jax.Array:
  """Points in the camera frame `N, 3` (metres)."""
  r, t = cam_to_world_44[:3, :3], cam_to_world_44[:3, 3]
  # Rigid inverse: x_cam = R^T (x_world - t).
  return (points_N3 - t[None, :]) @ r


def project(points_N3: jax.Array, K_33: jax.Array, cam_to_world_44: jax.Array):
  """`(uv_N2, z_N)`: pixel coordinates (column, row) and depth along the optical axis
  (metres; <= 0 behind the camera, where `uv` is meaningless)."""
  p = world_to_camera(points_N3, cam_to_world_44)
  z = p[:, 2]
  safe = jnp.where(jnp.abs(z) > 1e-9, z, 1e-9)
  u = K_33[0, 0] * p[:, 0] / safe + K_33[0, 1] * p[:, 1] / safe + K_33[0, 2]
  v = K_33[1, 1] * p[:, 1] / safe + K_33[1, 2]
  return jnp.stack([u, v], axis=-1), z


def visible(points_N3: jax.Array, depth_HW: jax.Array, K_33: jax.Array, cam_to_world_44: jax.Array,
            *, tolerance: float | jax.Array = 0.1, min_depth: float = 1e-3) -> jax.Array:
  """Whether the depth view sees each point (see the module docstring): bool `N`."""
  h, w = depth_HW.shape
  uv, z = project(points_N3, K_33, cam_to_world_44)
  col, row = jnp.round(uv[:, 0]), jnp.round(uv[:, 1])
  inside = (z > min_depth) & (col >= 0) & (col <= w - 1) & (row >= 0) & (row <= h - 1)
  d = depth_HW[jnp.clip(row, 0, h - 1).astype(jnp.int32), jnp.clip(col, 0, w - 1).astype(jnp.int32)]
  return inside & (d > 0) & (jnp.abs(d - z) <= tolerance)


def sample_bilinear(feats_hwC: jax.Array, uv_N2: jax.Array, image_hw: tuple[int, int]) -> jax.Array:
  """Features `N, C` read at pixel positions `uv` of an `image_hw` image that the
  `h, w` feature grid covers (cell centres aligned), bilinear, edges clamped."""
  h, w, _ = feats_hwC.shape
  H, W = image_hw
  x = jnp.clip((uv_N2[:, 0] + 0.5) * (w / W) - 0.5, 0.0, w - 1.0)
  y = jnp.clip((uv_N2[:, 1] + 0.5) * (h / H) - 0.5, 0.0, h - 1.0)
  x0, y0 = jnp.floor(x), jnp.floor(y)
  fx, fy = (x - x0)[:, None], (y - y0)[:, None]
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  x1, y1 = jnp.minimum(x0 + 1, w - 1), jnp.minimum(y0 + 1, h - 1)
  f = feats_hwC.astype(jnp.float32)
  top = f[y0, x0] * (1 - fx) + f[y0, x1] * fx
  bottom = f[y1, x0] * (1 - fx) + f[y1, x1] * fx
  return top * (1 - fy) + bottom * fy


@functools.partial(jax.jit, static_argnames=("image_hw",))
def point_features(points_N3: jax.Array, feats_VhwC: jax.Array, image_hw: tuple[int, int],
                   color_K_V33: jax.Array, depth_VHW: jax.Array, depth_K_V33: jax.Array,
                   cam_to_world_V44: jax.Array, tolerance: float | jax.Array = 0.1):
  """Each point's teacher feature, averaged over the views that see it.

  Args:
    points_N3: scene points (metres, world frame); padding rows may hold anything
      finite (mask them with the scene's validity mask downstream).
    feats_VhwC: per view, features over its colour image.
    image_hw: the colour images' size in pixels (`H, W`), static.
    color_K_V33: colour intrinsics (pixels of `image_hw`).
    depth_VHW, depth_K_V33: depth maps (metres) and their intrinsics.
    cam_to_world_V44: poses (shared by the colour and depth images, as ScanNet's).
    tolerance: visibility tolerance (metres), a runtime value.
  Returns:
    `(features_NC float32, views_N int32)`: the mean feature and how many views see
    each point; points no view sees get zeros and 0.
  """
  def one(feats_hwC, ck, depth, dk, pose):
    seen = visible(points_N3, depth, dk, pose, tolerance=tolerance)
    uv, _ = project(points_N3, ck, pose)
    return jnp.where(seen[:, None], sample_bilinear(feats_hwC, uv, image_hw), 0.0), seen

  f, seen = jax.vmap(one)(feats_VhwC, color_K_V33, depth_VHW, depth_K_V33, cam_to_world_V44)
  count = seen.sum(0).astype(jnp.int32)
  return f.sum(0) / jnp.maximum(count, 1)[:, None].astype(jnp.float32), count


def check_views(what: str, *, points_N3=None, cam_to_world_V44=None, K_V33=None, images_V=None,
                depth_VHW=None, atol: float = 1e-4):
  """Validates a scene's arrays before any long work; errors name `what` and the array.

  Points must be finite and non-empty; poses rigid 4 x 4 transforms (orthonormal
  rotation with determinant +1, last row 0 0 0 1); intrinsics 3 x 3 with positive focal
  lengths; images and depth maps one per pose.
  """
  if points_N3 is not None:
    p = np.asarray(points_N3)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
      raise ValueError(f"{what}: points must be N x 3 with N > 0, got shape {p.shape}")
    bad = ~np.isfinite(p).all(axis=1)
    if bad.any():
      raise ValueError(f"{what}: {int(bad.sum())} points have NaN or infinite coordinates "
                       f"(first at row {int(np.flatnonzero(bad)[0])})")
  n = None
  if cam_to_world_V44 is not None:
    t = np.asarray(cam_to_world_V44, np.float64)
    if t.ndim != 3 or t.shape[1:] != (4, 4):
      raise ValueError(f"{what}: poses must be V x 4 x 4, got shape {t.shape}")
    n = len(t)
    for i, m in enumerate(t):
      r = m[:3, :3]
      if (not np.isfinite(m).all() or not np.allclose(m[3], [0, 0, 0, 1], atol=atol)
          or not np.allclose(r.T @ r, np.eye(3), atol=atol) or np.linalg.det(r) < 0):
        raise ValueError(f"{what}: pose {i} is not a rigid camera-to-world transform "
                         f"(rotation must be orthonormal with det +1, last row 0 0 0 1): {m.tolist()}")
  if K_V33 is not None:
    k = np.asarray(K_V33)
    if k.ndim != 3 or k.shape[1:] != (3, 3) or (n is not None and len(k) != n):
      raise ValueError(f"{what}: intrinsics must be V x 3 x 3 with V = {n} poses, got shape {k.shape}")
    if not (np.isfinite(k).all() and (k[:, 0, 0] > 0).all() and (k[:, 1, 1] > 0).all()):
      raise ValueError(f"{what}: intrinsics need finite values and positive focal lengths")
  for name, arr in (("images", images_V), ("depth maps", depth_VHW)):
    if arr is not None and n is not None and len(arr) != n:
      raise ValueError(f"{what}: {len(arr)} {name} for {n} poses; expected one per pose")
