"""The synthetic paired rooms: seeded, two datasets that differ as S3DIS and ScanNet
do, and images that agree with the points they were scanned with."""
import numpy as np

from ttt_jax.data import rooms
from ttt_jax.data.projection import point_features


def test_a_scene_is_fixed_by_its_seed_and_index():
  a = rooms.make_scene("home", "test", 3, 1, "tiny")
  b = rooms.make_scene("home", "test", 3, 1, "tiny")
  c = rooms.make_scene("home", "test", 4, 1, "tiny")
  for x, y in ((a.points.coord_N3, b.points.coord_N3), (a.views.color_VHW3, b.views.color_VHW3),
               (a.views.depth_VhW, b.views.depth_VhW)):
    np.testing.assert_array_equal(x, y)
  assert a.points.scene_id == "home_test_s3_0001"
  assert a.points.coord_N3.shape != c.points.coord_N3.shape or not np.array_equal(a.points.coord_N3, c.points.coord_N3)


def test_the_two_datasets_differ_in_rooms_light_and_scans_and_cover_every_class():
  office = [rooms.make_scene("office", "train", 0, i, "tiny") for i in range(6)]
  home = [rooms.make_scene("home", "train", 0, i, "tiny") for i in range(6)]
  classes = set()
  for s in office + home:
    p = s.points
    assert (p.segment_N >= 0).all() and (p.segment_N < rooms.NUM_CLASSES).all()   # no ceiling points
    assert len(p.coord_N3) <= rooms.SIZES["tiny"]["num_points"]
    classes |= set(np.unique(p.segment_N).tolist())
  assert classes == set(range(rooms.NUM_CLASSES)), f"classes never generated: {set(range(9)) - classes}"
  mean = lambda ss, f: np.mean([f(s) for s in ss])
  # Sparser scans with holes, smaller rooms, warmer (less blue) and darker light at home.
  assert mean(home, lambda s: len(s.points.coord_N3)) < 0.7 * mean(office, lambda s: len(s.points.coord_N3))
  extent = lambda s: np.prod(np.ptp(s.points.coord_N3[:, :2], axis=0))
  assert mean(home, extent) < mean(office, extent)
  blue_ratio = lambda s: s.points.color_N3[:, 2].mean() / s.points.color_N3[:, 0].mean()
  assert mean(home, blue_ratio) < 0.8 * mean(office, blue_ratio)
  assert {b for s in home for b in np.unique(s.points.segment_N)} >= {rooms.CLASSES.index("bed")}


def test_images_show_the_points_they_were_scanned_with():
  s = rooms.make_scene("office", "test", 0, 0, "demo")
  v = s.views
  k = np.stack([v.color_K_33] * len(v.pose_V44))
  # The images themselves as "features": a visible point reads its own colour back.
  f, n = point_features(s.points.coord_N3, v.color_VHW3.astype(np.float32) / 255, v.color_VHW3.shape[1:3],
                        k, v.depth_VhW, k, v.pose_V44)
  seen = np.asarray(n) > 0
  assert seen.mean() > 0.3, f"only {seen.mean():.0%} of the points are seen by some view"
  err = np.abs(np.asarray(f)[seen] - s.points.color_N3[seen] / 255).mean()
  assert err < 0.05, f"points and pixels disagree by {err:.3f} in colour"
  assert (v.depth_VhW > 0).mean() > 0.9 and v.depth_VhW.max() < 12.0


def test_the_teacher_sees_far_more_varied_rooms_than_either_dataset():
  """The spread of images' mean chromaticity (colour of light and surfaces) across rooms."""
  def spread(images_NHW3):
    m = images_NHW3.reshape(len(images_NHW3), -1, 3).astype(np.float64).mean(1)
    return (m / m.sum(1, keepdims=True)).std(0).mean()
  imgs, labels = rooms.broad_views(0, 12, 1, (24, 32))
  assert imgs.shape == (12, 24, 32, 3) and labels.shape == (12, 24, 32)
  for ds in rooms.DATASETS:
    own = np.stack([rooms.make_scene(ds, "train", 0, i, "tiny").views.color_VHW3[0] for i in range(12)])
    assert spread(imgs) > 1.5 * spread(own), ds
