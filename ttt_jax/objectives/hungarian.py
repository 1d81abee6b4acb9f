"""Exact minimum-cost assignment in pure JAX (jit- and vmap-able).

The shortest-augmenting-path form of the Hungarian algorithm with row and column
potentials (Kuhn-Munkres as Jonker and Volgenant write it, O(n^2 m)): rows are added
one at a time; each addition runs a Dijkstra-like search over columns on reduced
costs until it reaches a free column, then flips the path. Every inner scan over
columns is a vector operation, so a call is `n` outer iterations of a
`lax.while_loop` whose body costs O(m).

Set prediction matches G targets (rows) to Q >= G queries (columns). Targets are
padded to a fixed G with `valid_G`; padded rows get zero cost everywhere, which
leaves the optimum over the real rows unchanged (they take leftover columns at no
cost) and keeps the shapes static.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _assign_rows(cost_NM: jax.Array) -> jax.Array:
  """Column of each row under a minimum-cost assignment of N <= M rows. Returns `(N,)` int32."""
  n, m = cost_NM.shape
  big = jnp.asarray(jnp.inf, cost_NM.dtype)
  # 1-indexed as the textbook form: index 0 is the virtual column / row of the search.
  a = jnp.zeros((n + 1, m + 1), cost_NM.dtype).at[1:, 1:].set(cost_NM)
  cols = jnp.arange(m + 1)

  def add_row(i, carry):
    u, v, p, way = carry
    p = p.at[0].set(i)

    def search_cond(c):
      _, _, p, _, _, _, j0 = c
      return p[j0] != 0

    def search_body(c):
      u, v, p, way, minv, used, j0 = c
      used = used.at[j0].set(True)
      i0 = p[j0]
      cur = a[i0] - u[i0] - v
      better = (~used) & (cur < minv)
      minv = jnp.where(better, cur, minv)
      way = jnp.where(better, j0, way)
      masked = jnp.where(used, big, minv)
      j1 = jnp.argmin(masked)
      delta = masked[j1]
      # Potentials of the rows matched to searched columns rise, those columns' fall.
      u = u.at[p].add(jnp.where(used, delta, 0).astype(u.dtype))
      v = jnp.where(used, v - delta, v)
      minv = jnp.where(used, minv, minv - delta)
      return u, v, p, way, minv, used, j1

    minv = jnp.full((m + 1,), big)
    used = jnp.zeros((m + 1,), bool)
    u, v, p, way, _, _, j0 = jax.lax.while_loop(
        search_cond, search_body, search_body((u, v, p, way, minv, used, jnp.int32(0))))

    def flip_cond(c):
      return c[1] != 0

    def flip_body(c):
      p, j0 = c
      j1 = way[j0]
      return p.at[j0].set(p[j1]), j1

    p, _ = jax.lax.while_loop(flip_cond, flip_body, (p, j0))
    return u, v, p, way

  init = (jnp.zeros((n + 1,), cost_NM.dtype), jnp.zeros((m + 1,), cost_NM.dtype),
          jnp.zeros((m + 1,), jnp.int32), jnp.zeros((m + 1,), jnp.int32))
  _, _, p, _ = jax.lax.fori_loop(1, n + 1, add_row, init)
  # p[j] = row (1-indexed) holding column j; invert it for the rows.
  row_of_col = p[1:] - 1
  col_of_row = jnp.zeros((n,), jnp.int32).at[jnp.where(row_of_col >= 0, row_of_col, n)].set(
      cols[:-1].astype(jnp.int32), mode="drop")
  return col_of_row


def hungarian_match(cost_QG: jax.Array, valid_G: jax.Array | None = None) -> jax.Array:
  """The query matched to each target under the minimum total cost.

  Args:
    cost_QG: `(Q, G)` float cost of giving target g to query q; Q >= G.
    valid_G: `(G,)` bool, False for padded targets (their result is meaningless).
  Returns:
    `(G,)` int32 query index per target; distinct over the valid targets.
  """
  q, g = cost_QG.shape
  if g > q:
    raise ValueError(f"hungarian_match: {g} targets but only {q} queries; expected targets <= queries")
  cost_GQ = cost_QG.T
  if valid_G is not None:
    cost_GQ = jnp.where(valid_G[:, None], cost_GQ, 0.0)
  # Shift to non-negative costs: the algorithm needs no sign, but finite, bounded values.
  cost_GQ = jnp.nan_to_num(cost_GQ, nan=1e9, posinf=1e9, neginf=-1e9)
  return _assign_rows(cost_GQ)
