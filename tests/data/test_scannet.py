"""ScanNet v2 and Pointcept scene readers on tiny fixtures written here in those formats."""
import cv2
import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from ttt_jax.data import scannet as S

SCENE = "scene0000_00"
# A unit square in the z = 0 plane (two triangles, normals +z) and a lone vertex above it.
VERTS = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 1]], np.float32)
FACES = [[0, 1, 2], [0, 2, 3]]
NYU40 = [1, 39, 13, 0, 40]          # wall, otherfurniture, unmapped, unannotated, unmapped


def _write_ply(path, labels=None):
  dt = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("alpha", "u1")]
  if labels is not None:
    dt.append(("label", "u2"))
  v = np.zeros(len(VERTS), dt)
  v["x"], v["y"], v["z"] = VERTS.T
  v["red"], v["green"], v["blue"], v["alpha"] = np.arange(5) * 10, 7, 200, 255
  if labels is not None:
    v["label"] = labels
  f = np.zeros(len(FACES), [("vertex_indices", "i4", (3,))])
  f["vertex_indices"] = FACES
  PlyData([PlyElement.describe(v, "vertex"), PlyElement.describe(f, "face")], byte_order="<").write(str(path))


def _write_scene(root):
  d = root / SCENE
  for sub in ("color", "depth", "pose", "intrinsic"):
    (d / sub).mkdir(parents=True)
  _write_ply(d / f"{SCENE}_vh_clean_2.ply")
  _write_ply(d / f"{SCENE}_vh_clean_2.labels.ply", NYU40)
  kc = np.array([[30, 0, 15.5, 0], [0, 30, 11.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
  kd = np.array([[15, 0, 7.5, 0], [0, 15, 5.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
  np.savetxt(d / "intrinsic" / "intrinsic_color.txt", kc)
  np.savetxt(d / "intrinsic" / "intrinsic_depth.txt", kd)
  for i in range(3):
    pose = np.eye(4)
    pose[0, 3] = 0.1 * i
    if i == 1:
      pose[:] = -np.inf                  # ScanNet's mark of failed tracking
    np.savetxt(d / "pose" / f"{i}.txt", pose)
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[..., 0] = 250                    # red, to catch a BGR/RGB swap
    cv2.imwrite(str(d / "color" / f"{i}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(d / "depth" / f"{i}.png"), np.full((12, 16), 1500 + i, np.uint16))
  return d


def test_scannet_scene_points_labels_and_normals(tmp_path):
  s = S.read_scannet_scene(_write_scene(tmp_path))
  assert s.scene_id == SCENE
  np.testing.assert_array_equal(s.coord_N3, VERTS)
  np.testing.assert_array_equal(s.color_N3[:, 0], np.arange(5) * 10)
  assert s.segment_N.tolist() == [0, 19, S.IGNORE, S.IGNORE, S.IGNORE]
  np.testing.assert_allclose(s.normal_N3[:4], np.tile([0, 0, 1], (4, 1)), atol=1e-6)
  np.testing.assert_array_equal(s.normal_N3[4], [0, 0, 0])    # in no face


def test_scannet_views_read_metres_rgb_intrinsics_and_skip_invalid_poses(tmp_path):
  v = S.read_scannet_views(_write_scene(tmp_path))
  assert v.frame_ids == (0, 2)
  assert v.color_VHW3.shape == (2, 24, 32, 3) and v.depth_VhW.shape == (2, 12, 16)
  assert v.color_VHW3[..., 0].min() > 200 and v.color_VHW3[..., 2].max() < 50   # RGB, not BGR
  np.testing.assert_allclose(v.depth_VhW[:, 0, 0], [1.500, 1.502])
  np.testing.assert_allclose(v.pose_V44[1, 0, 3], 0.2)
  np.testing.assert_allclose(v.color_K_33, [[30, 0, 15.5], [0, 30, 11.5], [0, 0, 1]])
  np.testing.assert_allclose(v.depth_K_33[0, 0], 15)


def test_scannet_bad_input_names_the_file(tmp_path):
  d = _write_scene(tmp_path)
  (d / f"{SCENE}_vh_clean_2.labels.ply").unlink()
  with pytest.raises(FileNotFoundError, match="labels.ply is missing"):
    S.read_scannet_scene(d)
  cv2.imwrite(str(d / "depth" / "2.png"), np.zeros((12, 16, 3), np.uint8))
  with pytest.raises(ValueError, match="2.png: expected 16-bit"):
    S.read_scannet_views(d)
  np.savetxt(d / "pose" / "0.txt", np.diag([2.0, 1, 1, 1]))
  with pytest.raises(ValueError, match="pose 0 is not a rigid"):
    S.read_scannet_views(d, frame_ids=[0])


def _write_pointcept(root, n=6, **over):
  d = root / "scene0001_00"
  d.mkdir()
  rng = np.random.default_rng(0)
  arrays = dict(coord=rng.normal(size=(n, 3)).astype(np.float32), color=rng.integers(0, 256, (n, 3)),
                normal=rng.normal(size=(n, 3)).astype(np.float32), segment20=np.array([-1, 0, 5, 19, 3, 3][:n]))
  arrays.update(over)
  for k, a in arrays.items():
    np.save(d / f"{k}.npy", a)
  return d, arrays


def test_pointcept_scene_round_trip(tmp_path):
  d, a = _write_pointcept(tmp_path)
  s = S.read_pointcept_scene(d)
  assert s.scene_id == "scene0001_00"
  np.testing.assert_array_equal(s.coord_N3, a["coord"])
  np.testing.assert_array_equal(s.color_N3, a["color"])
  assert s.segment_N.dtype == np.int32 and s.segment_N.tolist() == [-1, 0, 5, 19, 3, 3]


@pytest.mark.parametrize("over, match", [
    (dict(segment20=np.zeros(5, int)), r"segment20.npy: shape \(5,\), expected \(6,\)"),
    (dict(coord=np.full((6, 3), np.nan, np.float32)), "coord.npy: 6 points have NaN"),
    (dict(segment20=np.array([0, 1, 2, 3, 4, 20])), r"ids must be in \[-1, 19\]"),
])
def test_pointcept_bad_input_names_the_file(tmp_path, over, match):
  d, _ = _write_pointcept(tmp_path, **over)
  with pytest.raises(ValueError, match=match):
    S.read_pointcept_scene(d)


def test_nyu40_mapping_is_the_benchmark_order():
  assert S.nyu40_to_20(np.array(S.NYU40_IDS_20)).tolist() == list(range(20))
  assert S.nyu40_to_20(np.array([0, 13, 15, 40, 41, 1000])).tolist() == [S.IGNORE] * 6
