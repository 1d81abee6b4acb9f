"""Stochastic depth (timm's DropPath), shared by the SegFormer and the PTv3 backbone."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def drop_path(module: nn.Module, x, rate: float, deterministic: bool):
  """Each row of `x` (a sample `N, L, C`; a point `N, C`) has its residual branch
  zeroed with probability `rate` and scaled by 1 / (1 - rate) otherwise; draws from
  `module`'s 'dropout' rng. `rate` may be traced (a scan over blocks)."""
  if deterministic or (isinstance(rate, (int, float)) and rate == 0.0):
    return x
  keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)
