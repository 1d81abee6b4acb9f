"""Scanning a box room: surface colour under a light, sampled point clouds and posed
RGB-D images rendered by ray casting, with a sensor's noise and gaps.

Points and images see the same surfaces lit the same way (a scan's colours come from
its images), so a point's colour matches the pixels it projects to up to each view's
exposure and noise. Cameras follow ScanNet's convention (`projection.py`): x right,
y down, z forward, camera-to-world poses, depth along the optical axis in metres,
0 where the sensor measured nothing.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ttt_jax.data.rooms_layout import IGNORE, Boxes


@dataclasses.dataclass(frozen=True)
class Look:
  """How a dataset's scans look (the sensor and the light).

  Attributes:
    tint: light colour (RGB multipliers); `ambient` share of unshaded light;
      `exposure` overall brightness; `view_exposure` per-view relative jitter (std).
    image_noise: per-pixel colour noise (std, in [0, 1] units); `point_noise`: the
      points' colour noise.
    depth_noise: relative depth noise (std); `depth_dropout`: share of pixels without
      a measurement.
    coord_noise: point position noise (metres, std).
    density: share of `num_points` a scan keeps (sparser scans are lower).
    holes: (min, max) number of missing regions (balls of radius in `hole_radius`
      metres whose points are gone, as unscanned areas).
    camera_height: (min, max) metres.
  """
  tint: tuple[float, float, float]
  ambient: float
  exposure: float
  view_exposure: float
  image_noise: float
  point_noise: float
  depth_noise: float
  depth_dropout: float
  coord_noise: float
  density: float
  holes: tuple[int, int]
  hole_radius: tuple[float, float] = (0.3, 0.6)
  camera_height: tuple[float, float] = (1.2, 1.6)


LOOKS = {
    "office": Look(tint=(0.95, 0.98, 1.0), ambient=0.55, exposure=1.0, view_exposure=0.03,
                   image_noise=0.01, point_noise=0.01, depth_noise=0.003, depth_dropout=0.01,
                   coord_noise=0.004, density=1.0, holes=(0, 0), camera_height=(1.3, 1.7)),
    "home": Look(tint=(1.0, 0.82, 0.6), ambient=0.3, exposure=0.8, view_exposure=0.15,
                 image_noise=0.04, point_noise=0.04, depth_noise=0.012, depth_dropout=0.06,
                 coord_noise=0.012, density=0.6, holes=(1, 3), camera_height=(1.0, 1.5)),
}


def broad_look(rng: np.random.Generator) -> Look:
  """A random light and sensor well beyond both datasets' (the teacher's training)."""
  u = rng.uniform
  return Look(tint=tuple(u(0.55, 1.0, 3)), ambient=u(0.2, 0.7), exposure=u(0.55, 1.25),
              view_exposure=u(0.0, 0.2), image_noise=u(0.0, 0.06), point_noise=0.02,
              depth_noise=0.01, depth_dropout=0.03, coord_noise=0.01, density=1.0, holes=(0, 0),
              camera_height=(0.9, 1.8))


def _local(points_N3, boxes: Boxes, idx_N):
  """Points in the frames of their boxes."""
  c, s = np.cos(boxes.yaw_B[idx_N]), np.sin(boxes.yaw_B[idx_N])
  d = points_N3 - boxes.center_B3[idx_N]
  return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], axis=1)


def _pattern(points_N3, boxes: Boxes, idx_N):
  """Each box's texture at the points, in [-1, 1] (box-local, so it moves with the box)."""
  p = _local(points_N3, boxes, idx_N)
  f = boxes.tex_freq_B[idx_N]
  t = boxes.texture_B[idx_N]
  stripes = np.sin(2 * np.pi * f * p[:, 0])
  checker = np.sign(np.sin(np.pi * f * p[:, 0]) * np.sin(np.pi * f * p[:, 1]) * np.sin(np.pi * f * p[:, 2] + 0.3))
  grain = np.sin(2 * np.pi * f * (p[:, 0] + 0.08 * np.sin(9.0 * p[:, 1])) + 5.0 * p[:, 2])
  return np.select([t == 1, t == 2, t == 3], [stripes, checker, grain], 0.0)


def surface_colour(points_N3, normals_N3, idx_N, boxes: Boxes, look: Look, light_3) -> np.ndarray:
  """Lit colour in [0, 1] (`N, 3`) of points on boxes `idx_N` with unit normals."""
  albedo = boxes.albedo_B3[idx_N] * (1.0 + boxes.tex_amp_B[idx_N, None] * _pattern(points_N3, boxes, idx_N)[:, None])
  diffuse = np.clip(np.abs(normals_N3 @ light_3), 0.0, 1.0)
  shade = look.ambient + (1.0 - look.ambient) * diffuse
  return np.clip(albedo * shade[:, None] * np.asarray(look.tint) * look.exposure, 0.0, 1.0)


def scene_light(rng: np.random.Generator) -> np.ndarray:
  """A unit light direction, mostly from above, tilted sideways."""
  v = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), 1.0])
  return v / np.linalg.norm(v)


def inside_any(points_N3, boxes: Boxes, eps: float = 1e-3) -> np.ndarray:
  """Whether each point lies strictly inside some box (by more than `eps`)."""
  out = np.zeros(len(points_N3), bool)
  for b in range(len(boxes)):
    p = _local(points_N3, boxes, np.full(len(points_N3), b))
    out |= np.all(np.abs(p) < boxes.half_B3[b] - eps, axis=1)
  return out


def sample_points(rng: np.random.Generator, boxes: Boxes, size_3, look: Look, light_3, num_points: int):
  """A scan's points: `(coord_N3 float32, color_N3 uint8, normal_N3 float32, label_N int32)`.

  Box faces are sampled by area; points inside another box, outside the room,
  on the ceiling or on faces resting on the floor are dropped; then the scan keeps
  `look.density * num_points` of them at most, loses its holes and gets its noise.
  """
  areas = 4 * np.stack([boxes.half_B3[:, 1] * boxes.half_B3[:, 2], boxes.half_B3[:, 0] * boxes.half_B3[:, 2],
                        boxes.half_B3[:, 0] * boxes.half_B3[:, 1]], axis=1)          # B x 3 (face pairs)
  faces = np.repeat(areas, 2, axis=1).reshape(-1)                                     # B*6
  n_cand = 3 * num_points
  face = rng.choice(len(faces), size=n_cand, p=faces / faces.sum())
  b, f = face // 6, face % 6
  axis, sign = f // 2, np.where(f % 2 == 0, -1.0, 1.0)
  local = rng.uniform(-1, 1, (n_cand, 3)) * boxes.half_B3[b]
  local[np.arange(n_cand), axis] = sign * boxes.half_B3[b, axis]
  n_local = np.zeros((n_cand, 3))
  n_local[np.arange(n_cand), axis] = sign
  c, s = np.cos(boxes.yaw_B[b]), np.sin(boxes.yaw_B[b])
  rot = lambda v: np.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1], v[:, 2]], axis=1)
  coord = rot(local) + boxes.center_B3[b]
  normal = rot(n_local)
  w, d, h = np.asarray(size_3, np.float64)
  e = 1e-3
  keep = ((coord[:, 0] > -e) & (coord[:, 0] < w + e) & (coord[:, 1] > -e) & (coord[:, 1] < d + e)
          & (coord[:, 2] > -e) & (coord[:, 2] < h - e) & (boxes.label_B[b] != IGNORE)
          & ~((normal[:, 2] < -0.5) & (coord[:, 2] < 0.01)))
  keep &= ~inside_any(coord, boxes)
  idx = np.flatnonzero(keep)
  idx = idx[rng.permutation(len(idx))[:int(round(look.density * num_points))]]
  coord, normal, b = coord[idx], normal[idx], b[idx]
  for _ in range(int(rng.integers(look.holes[0], look.holes[1] + 1))):
    centre = coord[rng.integers(len(coord))]
    gone = np.linalg.norm(coord - centre, axis=1) < rng.uniform(*look.hole_radius)
    coord, normal, b = coord[~gone], normal[~gone], b[~gone]
  colour = surface_colour(coord, normal, b, boxes, look, light_3)
  colour = np.clip(colour + rng.normal(0, look.point_noise, colour.shape), 0, 1)
  coord = coord + rng.normal(0, look.coord_noise, coord.shape)
  return (coord.astype(np.float32), np.round(colour * 255).astype(np.uint8), normal.astype(np.float32),
          boxes.label_B[b].astype(np.int32))


def ray_cast(origin_3, dirs_R3, boxes: Boxes):
  """Nearest hit of each ray `origin + t * dir` (t > 0): `(t_R, box_R, normal_R3)`;
  box -1 and t = inf where a ray hits nothing."""
  r = len(dirs_R3)
  best_t = np.full(r, np.inf)
  best_b = np.full(r, -1, np.int64)
  best_n = np.zeros((r, 3))
  for b in range(len(boxes)):
    c, s = np.cos(boxes.yaw_B[b]), np.sin(boxes.yaw_B[b])
    rot_in = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])
    o = rot_in @ (np.asarray(origin_3, np.float64) - boxes.center_B3[b])
    dl = dirs_R3 @ rot_in.T
    safe = np.where(np.abs(dl) > 1e-12, dl, 1e-12)
    t1 = (-boxes.half_B3[b] - o) / safe
    t2 = (boxes.half_B3[b] - o) / safe
    near = np.minimum(t1, t2)
    tn, ax = near.max(axis=1), near.argmax(axis=1)
    tf = np.maximum(t1, t2).min(axis=1)
    hit = (tn <= tf) & (tn > 1e-6) & (tn < best_t)
    if hit.any():
      nl = np.zeros((hit.sum(), 3))
      nl[np.arange(hit.sum()), ax[hit]] = -np.sign(dl[hit, ax[hit]])
      best_t[hit], best_b[hit], best_n[hit] = tn[hit], b, nl @ rot_in
  return best_t, best_b, best_n


def intrinsics(height: int, width: int, fov_deg: float = 70.0) -> np.ndarray:
  """Pinhole `K_33` with the horizontal field of view `fov_deg`, centred."""
  f = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
  return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], np.float32)


def camera_pose(rng: np.random.Generator, boxes: Boxes, size_3, look: Look) -> np.ndarray:
  """A camera-to-world pose inside the room, clear of furniture, looking slightly down."""
  w, d, _ = size_3
  for _ in range(100):
    pos = np.array([rng.uniform(0.3, w - 0.3), rng.uniform(0.3, d - 0.3), rng.uniform(*look.camera_height)])
    if not inside_any(pos[None], boxes, eps=-0.15)[0]:
      break
  # Towards the room's middle, give or take 70 degrees, as a scanning person looks.
  to_mid = np.arctan2(d / 2 - pos[1], w / 2 - pos[0])
  yaw, pitch = to_mid + rng.uniform(-1.2, 1.2), np.radians(rng.uniform(-40, -10))
  fwd = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)])
  right = np.cross(fwd, [0.0, 0.0, 1.0])
  right /= np.linalg.norm(right)
  down = np.cross(fwd, right)
  pose = np.eye(4)
  pose[:3, :3] = np.stack([right, down, fwd], axis=1)
  pose[:3, 3] = pos
  return pose.astype(np.float32)


def render_view(rng: np.random.Generator, boxes: Boxes, pose_44, K_33, hw: tuple[int, int], look: Look,
                light_3):
  """`(rgb_HW3 uint8, depth_HW float32 metres, label_HW int32)` of one posed view."""
  h, w = hw
  v, u = np.mgrid[0:h, 0:w]
  dirs_cam = np.stack([(u - K_33[0, 2]) / K_33[0, 0], (v - K_33[1, 2]) / K_33[1, 1], np.ones((h, w))], -1)
  dirs = dirs_cam.reshape(-1, 3) @ np.asarray(pose_44[:3, :3], np.float64).T   # z_cam = 1: t is depth
  t, b, n = ray_cast(pose_44[:3, 3], dirs, boxes)
  hit = b >= 0
  pts = pose_44[:3, 3] + dirs * np.where(hit, t, 0)[:, None]
  rgb = np.zeros((h * w, 3))
  rgb[hit] = surface_colour(pts[hit], n[hit], b[hit], boxes, look, light_3)
  rgb = rgb * (1.0 + rng.normal(0, look.view_exposure)) + rng.normal(0, look.image_noise, rgb.shape)
  depth = np.where(hit, t, 0.0) * (1.0 + rng.normal(0, look.depth_noise, h * w))
  depth[rng.random(h * w) < look.depth_dropout] = 0.0
  label = np.where(hit, boxes.label_B[np.maximum(b, 0)], IGNORE)
  return (np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8).reshape(h, w, 3),
          depth.astype(np.float32).reshape(h, w), label.astype(np.int32).reshape(h, w))
