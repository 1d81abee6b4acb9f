"""The PTv3-style backbone: levels of a hand-made scene, padding and row-order
invariance, masked BatchNorm, and Pointcept's ScanNet size."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttt_jax.models.ptv3 import PTv3, check_extent, ptv3_config, scene_levels

# A voxel of 1/16 m: cell centres are exact in float32, so the expected grid is exact.
CFG = ptv3_config("tiny", grid_size=0.0625)


def _scene(n_valid=90, n=128, seed=0):
  """Points on distinct cells of a 20-cell cube (one per cell, as grid sampling
  leaves them), padded to `n` rows; features: colour and normal."""
  rng = np.random.default_rng(seed)
  cells = rng.choice(20 ** 3, n_valid, replace=False)
  g = np.stack(np.unravel_index(cells, (20, 20, 20)), 1)
  coord = np.zeros((n, 3), np.float32)
  coord[:n_valid] = (g + 0.5) * CFG.grid_size
  feat = np.zeros((n, 6), np.float32)
  feat[:n_valid] = rng.normal(size=(n_valid, 6))
  valid = np.arange(n) < n_valid
  return coord, feat, valid, g


@functools.partial(jax.jit, static_argnames="train")
def _apply(variables, coord, feat, valid, train=False):
  levels = scene_levels(coord, valid, CFG)
  if train:
    return PTv3(CFG).apply(variables, feat, levels, train=True, mutable=["batch_stats"])
  return PTv3(CFG).apply(variables, feat, levels)


def _init(coord, feat, valid):
  levels = scene_levels(jnp.asarray(coord), jnp.asarray(valid), CFG)
  return PTv3(CFG).init(jax.random.key(0), jnp.asarray(feat), levels)


def test_levels_pool_cells_sharing_a_parent():
  coord, _, valid, g = _scene()
  l0, l1 = scene_levels(jnp.asarray(coord), jnp.asarray(valid), CFG)
  g0 = g - g.min(0)                                      # grid from the scene's minimum
  np.testing.assert_array_equal(np.asarray(l0.grid)[:90], g0)
  parents = {tuple(p) for p in g0 >> 1}
  assert int(np.asarray(l1.valid).sum()) == len(parents)
  cluster = np.asarray(l1.cluster)[:90]
  np.testing.assert_array_equal(np.asarray(l1.grid)[cluster], g0 >> 1)   # each point -> its parent's row
  assert np.asarray(l1.valid)[: len(parents)].all() and not np.asarray(l1.valid)[len(parents):].any()
  # Every order sorts the valid rows first.
  for perm in np.asarray(l0.perm):
    assert set(perm[:90]) == set(range(90))


def test_padding_rows_and_row_order_do_not_change_the_features():
  coord, feat, valid, _ = _scene()
  v = _init(coord, feat, valid)
  out = np.asarray(_apply(v, coord, feat, valid))
  assert out.shape == (128, CFG.out_channels) and np.all(out[~valid] == 0) and np.abs(out[valid]).sum() > 0
  # More padding (another multiple of the patch): the same features on the real points.
  pad = lambda a: np.concatenate([a, np.zeros((64,) + a.shape[1:], a.dtype)])
  out_more = np.asarray(_apply(v, pad(coord), pad(feat), pad(valid)))
  np.testing.assert_allclose(out_more[:128], out, rtol=1e-5, atol=1e-5)
  # The real points in another row order: the same features, permuted.
  p = np.random.default_rng(1).permutation(90)
  rows = np.concatenate([p, np.arange(90, 128)])
  out_perm = np.asarray(_apply(v, coord[rows], feat[rows], valid[rows]))
  np.testing.assert_allclose(out_perm, out[rows], rtol=1e-4, atol=1e-5)


def test_batchnorm_statistics_ignore_padding():
  coord, feat, valid, _ = _scene()
  v = _init(coord, feat, valid)
  pad = lambda a, x=0: np.concatenate([a, np.full((64,) + a.shape[1:], x, a.dtype)])
  _, s1 = _apply(v, coord, feat, valid, train=True)
  _, s2 = _apply(v, pad(coord), pad(feat, 100.0), pad(valid), train=True)   # loud padding
  for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_scannet_size_has_pointcepts_parameter_count():
  cfg = ptv3_config("scannet")
  n = 1024
  coord = jnp.zeros((n, 3)), jnp.ones((n,), bool)
  shapes = jax.eval_shape(lambda c, m: PTv3(cfg).init(jax.random.key(0), jnp.zeros((n, 6)),
                                                       scene_levels(c, m, cfg)), *coord)
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
  # Pointcept's PTv3 (v1m1 base, ScanNet) has 46.2 M parameters; this backbone 46,166,272.
  assert 46.0e6 < count < 46.3e6, count


def test_a_scene_too_large_for_the_grid_is_refused():
  coord = np.array([[0, 0, 0], [60.0, 0, 0]], np.float32)
  with pytest.raises(ValueError, match="spans .* more than 51.2 m"):
    check_extent(coord, np.ones(2, bool), ptv3_config("tiny"), "scene0")


def test_point_segmenter_heads_share_the_backbone():
  from ttt_jax.models.point_seg import PointSegmenter
  coord, feat, valid, _ = _scene()
  levels = jax.jit(scene_levels, static_argnums=2)(jnp.asarray(coord), jnp.asarray(valid), CFG)
  model = PointSegmenter(CFG, num_classes=8, teacher_dim=12)
  v = jax.jit(model.init)(jax.random.key(0), jnp.asarray(feat), levels)
  assert set(v["params"]) == {"backbone", "seg_head", "kd_fc1", "kd_fc2"}
  logits, kd = jax.jit(model.apply)(v, jnp.asarray(feat), levels)
  assert logits.shape == (128, 8) and kd.shape == (128, 12)
  seg = jax.jit(lambda v, f, lv: model.apply(v, f, lv, method="segment"))(v, jnp.asarray(feat), levels)
  np.testing.assert_allclose(seg, logits, rtol=1e-6, atol=1e-6)
  # rho_Y is linear on the backbone's features: padding rows (zero features) give its bias.
  np.testing.assert_allclose(np.asarray(logits)[~valid], np.broadcast_to(v["params"]["seg_head"]["bias"], (38, 8)))
