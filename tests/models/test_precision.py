"""bfloat16 compute with float32 state: the smoke config's predictions against float32."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttt_jax.models.precision import apply_in, cast_floats
from tests.helpers import tiny_runner, video


def test_cast_floats_leaves_integers_and_keys_alone():
  tree = {"w": jnp.ones(3), "ids": jnp.arange(3), "ok": jnp.array(True), "key": jax.random.key(0)}
  out = cast_floats(tree, jnp.bfloat16)
  assert out["w"].dtype == jnp.bfloat16 and out["ids"].dtype == jnp.int32 and out["ok"].dtype == bool
  assert jax.dtypes.issubdtype(out["key"].dtype, jax.dtypes.prng_key)
  with pytest.raises(ValueError, match="compute dtype must be one of"):
    apply_in("float16", lambda v: v, tree)


def test_bfloat16_smoke_run_predicts_as_float32():
  """Online TTT-MAE on the smoke config (tiny random SegFormer): the bfloat16 run
  adapts (finite losses, float32 state) and its labels agree with float32's on
  >= 99% of pixels."""
  frames, _ = video(seed=3, t=6)
  labels = {}
  for dt in ("float32", "bfloat16"):
    r, _ = tiny_runner("online_ttt_mae", f"model.compute_dtype={dt}")  # = configs/smoke.py
    sched, ticks, state = r._prepare("v", frames, 0, "scan")  # noqa: SLF001 - the final state
    final, outs = jax.jit(r._jitted["scan"])(state, ticks)  # noqa: SLF001
    n = len(sched)
    assert np.isfinite(np.asarray(outs["loss"])[:n]).all() and int(final.skipped) == 0, dt
    assert np.asarray(outs["adapted"])[1:n].all(), dt
    kept = {x.dtype for x in jax.tree.leaves((final.trainable, final.opt_state, final.stats))
            if jnp.issubdtype(x.dtype, jnp.floating)}
    assert kept == {np.dtype("float32")}, f"{dt}: the state must stay float32, got {kept}"
    labels[dt] = np.asarray(outs["labels"])[np.flatnonzero(sched.predict)]
  agree = float(np.mean(labels["float32"] == labels["bfloat16"]))
  assert agree >= 0.99, f"bfloat16 labels agree with float32 on {agree:.4f} of pixels"
  print(f"bfloat16 / float32 label agreement: {agree:.4f}")
