"""Space-filling-curve serialisation: z-order by hand, the Hilbert curve's defining
properties on whole grids, the hierarchy grid pooling relies on, and padding."""
import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from ttt_jax.models import serialization as S


def _cube(depth):
  side = 1 << depth
  return np.array(list(itertools.product(range(side), repeat=3)), np.int32)


def test_z_order_by_hand():
  g = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 0, 0], [1, 1, 1], [2, 3, 1]], np.int32)
  # x's bit first at each level: (x, y, z) bits at positions 3l+2, 3l+1, 3l. For (2, 3, 1):
  # level 1 bits x=1 y=1 z=0 -> 0b110 << 3 = 48; level 0 bits x=0 y=1 z=1 -> 0b011 = 3.
  want = [4, 2, 1, 4 + 32, 7, 48 + 3]
  assert np.asarray(S.encode(jnp.asarray(g), "z", 2)).tolist() == want
  assert np.asarray(S.encode(jnp.asarray(g[:1]), "z-trans", 2)).tolist() == [2]   # x and y swapped


@pytest.mark.parametrize("order", ["hilbert", "hilbert-trans"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_hilbert_visits_every_cell_once_moving_to_a_face_neighbour(order, depth):
  g = _cube(depth)
  code = np.asarray(S.encode(jnp.asarray(g), order, depth))
  assert sorted(code.tolist()) == list(range(8 ** depth))          # a bijection onto 0..8^d-1
  path = g[np.argsort(code)]
  steps = np.abs(np.diff(path, axis=0)).sum(1)
  assert (steps == 1).all()                                         # each step: one cell, one axis
  assert path[0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("order", S.ORDERS)
def test_code_shifted_by_3_is_the_parent_cells_code(order):
  depth = 3
  g = _cube(depth)
  fine = np.asarray(S.encode(jnp.asarray(g), order, depth))
  coarse = np.asarray(S.encode(jnp.asarray(g >> 1), order, depth - 1))
  np.testing.assert_array_equal(fine >> 3, coarse)


def test_grid_coordinates_and_padding_sort_last():
  coord = np.array([[0.5, 1.0, 2.0], [0.52, 1.07, 2.0], [9.0, 9.0, 9.0], [0.61, 1.0, 2.01]], np.float32)
  valid = np.array([True, True, False, True])
  g = np.asarray(S.grid_coord(jnp.asarray(coord), jnp.asarray(valid), 0.05))
  assert g.tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0], [2, 0, 0]]
  code, perm, inv = S.serialize(jnp.asarray(g), jnp.asarray(valid), "z", 4)
  assert int(code[2]) == S.PAD_CODE and int(perm[-1]) == 2
  np.testing.assert_array_equal(np.asarray(perm)[np.asarray(inv)], np.arange(4))


def test_bad_order_or_depth_is_refused():
  with pytest.raises(ValueError, match="unknown serialisation order 'peano'"):
    S.encode(jnp.zeros((1, 3), jnp.int32), "peano", 4)
  with pytest.raises(ValueError, match="depth 11 bits per axis"):
    S.encode(jnp.zeros((1, 3), jnp.int32), "z", 11)
