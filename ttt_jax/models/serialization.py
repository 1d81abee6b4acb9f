"""Point-cloud serialisation for a Point-Transformer-V3-style backbone: grid
coordinates, space-filling-curve codes and the orders they give.

A padded scene (`N` rows, a validity mask) is voxelised to integer grid coordinates,
each point gets a code on a space-filling curve over the grid, and sorting by code
gives the serialised order in which attention patches are cut. Four orders, as
Pointcept's PTv3 uses (block i of a stage takes order i mod 4):

- 'z': Morton (z-order) code, bits interleaved x, y, z from the most significant;
- 'z-trans': the same with x and y swapped;
- 'hilbert': the Hilbert curve (Skilling's transpose construction, "Programming the
  Hilbert curve", 2004): consecutive codes are face-adjacent cells;
- 'hilbert-trans': the same with x and y swapped.

Both curves are hierarchical: `code >> 3` is the code of the parent cell of the grid
one level coarser (grid coordinates halved), which is what grid pooling uses.
Codes are int32, so `depth` (bits per axis) is at most 10: a 1024^3 grid, 20 m at
2 cm. Padding rows get the largest int32 and sort last.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")
MAX_DEPTH = 10
PAD_CODE = jnp.iinfo(jnp.int32).max


def grid_coord(coord_N3: jax.Array, valid_N: jax.Array, grid_size: float) -> jax.Array:
  """`floor((coord - min) / grid_size)` as int32 `N, 3`, the minimum over valid points
  (padding rows get 0)."""
  big = jnp.finfo(jnp.float32).max
  lo = jnp.min(jnp.where(valid_N[:, None], coord_N3, big), axis=0)
  g = jnp.floor((coord_N3 - lo[None, :]) / grid_size).astype(jnp.int32)
  return jnp.where(valid_N[:, None], g, 0)


def _interleave(axes, depth: int) -> jax.Array:
  """Bits of `axes` (int32 arrays) interleaved from the most significant: for each bit
  level high to low, axis 0's bit first."""
  n = len(axes)
  code = jnp.zeros_like(axes[0])
  for level in range(depth - 1, -1, -1):
    for i, a in enumerate(axes):
      code = code | (((a >> level) & 1) << (level * n + (n - 1 - i)))
  return code


def z_order(g_N3: jax.Array, depth: int) -> jax.Array:
  """Morton codes of grid coordinates `N, 3` (each in [0, 2^depth))."""
  return _interleave([g_N3[:, 0], g_N3[:, 1], g_N3[:, 2]], depth)


def hilbert(g_N3: jax.Array, depth: int) -> jax.Array:
  """Hilbert codes of grid coordinates `N, 3` (each in [0, 2^depth))."""
  x = [g_N3[:, i] for i in range(3)]
  n = 3
  # Undo excess work (Skilling's AxestoTranspose), from the top bit down.
  q = 1 << (depth - 1)
  while q > 1:
    p = q - 1
    for i in range(n):
      on = (x[i] & q) != 0
      t = (x[0] ^ x[i]) & p
      x0_invert = x[0] ^ p
      x0_swap, xi_swap = x[0] ^ t, x[i] ^ t
      if i == 0:
        x[0] = jnp.where(on, x0_invert, x[0])   # exchanging axis 0 with itself is a no-op
      else:
        x[0], x[i] = jnp.where(on, x0_invert, x0_swap), jnp.where(on, x[i], xi_swap)
    q >>= 1
  # Gray encode.
  for i in range(1, n):
    x[i] = x[i] ^ x[i - 1]
  t = jnp.zeros_like(x[0])
  q = 1 << (depth - 1)
  while q > 1:
    t = jnp.where((x[n - 1] & q) != 0, t ^ (q - 1), t)
    q >>= 1
  x = [xi ^ t for xi in x]
  return _interleave(x, depth)


def encode(g_N3: jax.Array, order: str, depth: int) -> jax.Array:
  """Codes of one of `ORDERS`."""
  if order not in ORDERS:
    raise ValueError(f"unknown serialisation order {order!r}; expected one of {ORDERS}")
  if not 1 <= depth <= MAX_DEPTH:
    raise ValueError(f"depth {depth} bits per axis must be in [1, {MAX_DEPTH}] (int32 codes)")
  if order.endswith("-trans"):
    g_N3 = g_N3[:, jnp.array([1, 0, 2])]
  return (z_order if order.startswith("z") else hilbert)(g_N3, depth)


def serialize(g_N3: jax.Array, valid_N: jax.Array, order: str, depth: int):
  """`(code_N, order_N, inverse_N)`: codes (padding: `PAD_CODE`), the permutation that
  sorts them (valid points first, along the curve) and its inverse."""
  code = jnp.where(valid_N, encode(g_N3, order, depth), PAD_CODE)
  perm = jnp.argsort(code, stable=True)
  inverse = jnp.zeros_like(perm).at[perm].set(jnp.arange(perm.shape[0], dtype=perm.dtype))
  return code, perm, inverse
