"""2D to 3D projection, visibility and feature averaging on a hand-made scene whose
answers are worked out by hand."""
import numpy as np
import pytest

from ttt_jax.data import projection as P

F, CX, CY = 10.0, 4.5, 3.5          # 10-px focal length; an 8 x 10 (rows x cols) image
K = np.array([[F, 0, CX], [0, F, CY], [0, 0, 1]], np.float32)
EYE = np.eye(4, dtype=np.float32)


def _pose(yaw_deg=0.0, t=(0.0, 0.0, 0.0)):
  """Camera-to-world: rotation about the world y axis, then a translation."""
  a = np.deg2rad(yaw_deg)
  m = np.eye(4, dtype=np.float32)
  m[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
  m[:3, 3] = t
  return m


def test_projection_by_hand():
  pts = np.array([[0.0, 0.0, 2.0], [0.4, -0.2, 2.0], [0.0, 0.0, -1.0]], np.float32)
  uv, z = P.project(pts, K, EYE)
  np.testing.assert_allclose(uv[:2], [[CX, CY], [CX + F * 0.2, CY - F * 0.1]], atol=1e-5)
  np.testing.assert_allclose(z, [2.0, 2.0, -1.0])
  # A camera at x = 1 turned 90 degrees about y looks along world -x... its z axis is
  # R @ (0, 0, 1) = (sin 90, 0, cos 90) = +x: the world point (3, 0, 0) is 2 m ahead,
  # and world +z is the camera's -x (left of centre).
  uv, z = P.project(np.array([[3.0, 0.0, 0.0], [3.0, 0.0, 0.5]], np.float32), K, _pose(90, (1, 0, 0)))
  np.testing.assert_allclose(z, [2.0, 2.0], atol=1e-5)
  np.testing.assert_allclose(uv, [[CX, CY], [CX - F * 0.25, CY]], atol=1e-5)


def test_visibility_by_hand():
  depth = np.full((8, 10), 2.0, np.float32)   # a wall 2 m ahead
  depth[0, 0] = 0.0                            # a hole: no measurement
  pts = np.array([
      [0.0, 0.0, 2.05],   # on the wall, within 0.1 m: seen
      [0.0, 0.0, 3.0],    # behind the wall: hidden
      [0.0, 0.0, 1.0],    # in front of the wall (the wall is what the sensor saw): not seen
      [0.0, 0.0, -2.0],   # behind the camera
      [5.0, 0.0, 2.0],    # right of the image (u = 29.5)
      [-0.9, -0.7, 2.0],  # lands on pixel (0, 0), the hole
  ], np.float32)
  seen = np.asarray(P.visible(pts, depth, K, EYE, tolerance=0.1))
  assert seen.tolist() == [True, False, False, False, False, False]
  assert np.asarray(P.visible(pts, depth, K, EYE, tolerance=1.5))[:3].tolist() == [True, True, True]


def test_bilinear_sampling_reproduces_a_linear_feature_map():
  # A 4 x 5 grid over an 8 x 10 image: cell (i, j) has its centre at pixel
  # (2 j + 0.5, 2 i + 0.5). Features linear in the cell coordinates are read back exactly.
  ii, jj = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
  feats = np.stack([jj, ii, 3 * jj - ii + 1], -1).astype(np.float32)
  uv = np.array([[2.5, 2.5], [4.0, 3.0], [0.5, 0.5]], np.float32)   # pixel (col, row)
  got = np.asarray(P.sample_bilinear(feats, uv, (8, 10)))
  x, y = (uv[:, 0] + 0.5) / 2 - 0.5, (uv[:, 1] + 0.5) / 2 - 0.5
  np.testing.assert_allclose(got, np.stack([x, y, 3 * x - y + 1], -1), atol=1e-6)
  # Edges clamp: far outside reads the border cell.
  np.testing.assert_allclose(P.sample_bilinear(feats, np.array([[-50.0, -50.0]]), (8, 10)), [[0, 0, 1]])


def test_point_features_average_the_views_that_see_each_point():
  # Two views of a wall at z = 2, the second 0.2 m to the right (same orientation),
  # each with a constant feature map: view 0 says (1, 0), view 1 says (0, 3).
  poses = np.stack([EYE, _pose(0, (0.2, 0, 0))])
  depth = np.full((2, 8, 10), 2.0, np.float32)
  feats = np.stack([np.broadcast_to([1.0, 0.0], (4, 5, 2)), np.broadcast_to([0.0, 3.0], (4, 5, 2))])
  Ks = np.stack([K, K])
  pts = np.array([
      [0.0, 0.0, 2.0],    # both views: (0.5, 1.5)
      [-0.85, 0.0, 2.0],  # view 0 only: u = 0.25 there, -0.75 (outside) in view 1
      [0.0, 0.0, 5.0],    # hidden behind the wall in both
  ], np.float32)
  f, n = P.point_features(pts, feats.astype(np.float32), (8, 10), Ks, depth, Ks, poses, 0.1)
  np.testing.assert_allclose(np.asarray(f), [[0.5, 1.5], [1.0, 0.0], [0.0, 0.0]], atol=1e-6)
  assert np.asarray(n).tolist() == [2, 1, 0]


def test_bad_views_are_refused_naming_the_scene():
  rigid = np.stack([EYE, _pose(30, (1, 2, 3))])
  P.check_views("scene0000_00", points_N3=np.zeros((4, 3)), cam_to_world_V44=rigid,
                K_V33=np.stack([K, K]), images_V=[0, 0], depth_VHW=np.zeros((2, 8, 10)))
  with pytest.raises(ValueError, match="scene0000_00: 1 points have NaN"):
    P.check_views("scene0000_00", points_N3=np.array([[0, 0, 0], [np.nan, 0, 0]]))
  with pytest.raises(ValueError, match="N > 0"):
    P.check_views("scene0000_00", points_N3=np.zeros((0, 3)))
  scaled = rigid.copy()
  scaled[1, :3, :3] *= 2
  with pytest.raises(ValueError, match="pose 1 is not a rigid"):
    P.check_views("scene0000_00", cam_to_world_V44=scaled)
  mirrored = rigid.copy()
  mirrored[0, 0, 0] = -1
  with pytest.raises(ValueError, match="pose 0 is not a rigid"):
    P.check_views("scene0000_00", cam_to_world_V44=mirrored)
  with pytest.raises(ValueError, match="3 depth maps for 2 poses"):
    P.check_views("scene0000_00", cam_to_world_V44=rigid, depth_VHW=np.zeros((3, 8, 10)))
  with pytest.raises(ValueError, match="intrinsics must be V x 3 x 3 with V = 2"):
    P.check_views("scene0000_00", cam_to_world_V44=rigid, K_V33=np.stack([K]))
