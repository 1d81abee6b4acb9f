"""Online TTT-MAE's mechanics against the reference code (renwang435/video-ttt-release):
head normalisation without running statistics, stochastic depth, channel dropout,
the native-scale crop, the balanced window sampler, and the parameter-drift report.
Each test fails under the earlier rule it replaced."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttt_jax.engine import memory as mem_lib
from ttt_jax.methods.augment import random_crop
from ttt_jax.methods.defaults import video_config
from ttt_jax.metrics.drift import layer_group, layer_group_drift
from ttt_jax.models.drop_path import drop_path
from ttt_jax.models.segformer import DecodeHead, MiTEncoder, segformer_config
from tests.helpers import random_frames, tiny_runner


def test_reference_defaults():
  m = video_config().method
  assert (m.augment.crop, tuple(m.augment.crop_size), m.mae.drop_path, m.window, m.steps_per_frame) == (
      "native", (0, 0), True, 16, 1)
  assert m.window_sampling == "iid"          # the paper's description; 'balanced' is the code's
  o = m.optimizer
  assert (o.lr, tuple(map(tuple, o.lr_groups)), o.weight_decay, o.clip_norm) == (
      1e-4, (("params/encoder/.*", 0.1),), 0.05, 0.01)


def test_group_norm_heads_keep_no_statistics_so_norm_adapt_changes_nothing():
  """The reference's heads normalise each input by itself: 'LN adapt' equals the main task."""
  preds = {}
  for name, config in (("main", "main_task"), ("norm", "norm_adapt")):
    runner, c = tiny_runner(config, "model.head_norm=group")
    assert runner.plan.variables.stats == {}                       # no running statistics
    preds[name] = runner.run_one("v", random_frames(t=4), 0)[0]
  np.testing.assert_array_equal(preds["main"], preds["norm"])
  with pytest.raises(ValueError, match="head_norm"):
    segformer_config("tiny", 8, head_norm="instance")


def test_drop_path_zeroes_or_rescales_each_samples_branch():
  class M(nn.Module):
    @nn.compact
    def __call__(self, x, det):
      return drop_path(self, x, 0.5, det)
  x = jnp.ones((64, 3, 2))
  out = np.asarray(M().apply({}, x, False, rngs={"dropout": jax.random.key(0)}))
  per = out.reshape(64, -1)
  assert set(np.unique(per).tolist()) == {0.0, 2.0}                # 0 or 1 / (1 - rate)
  assert all(len(np.unique(r)) == 1 for r in per)                  # one draw per sample
  assert 16 < (per[:, 0] == 0).sum() < 48
  np.testing.assert_array_equal(M().apply({}, x, True), x)


def test_encoder_stochastic_depth_only_when_not_deterministic():
  cfg = segformer_config("tiny", 8, drop_path_rate=0.3)
  enc = MiTEncoder(cfg)
  x = jax.random.normal(jax.random.key(0), (4, 32, 32, 4))
  v = enc.init(jax.random.key(1), x)
  det = enc.apply(v, x)
  det0 = MiTEncoder(segformer_config("tiny", 8)).apply(v, x)
  for a, b in zip(det, det0):                                      # rate unused when deterministic
    np.testing.assert_array_equal(a, b)
  sto = enc.apply(v, x, deterministic=False, rngs={"dropout": jax.random.key(2)})
  assert np.abs(np.asarray(sto[-1]) - np.asarray(det[-1])).max() > 1e-4


def test_decoder_dropout_drops_whole_channels():
  """mmseg's Dropout2d (SegFormer's and DiTTA's decode head): one draw per (sample,
  channel). With an identity classifier the logits are the dropped fused features."""
  head = DecodeHead(8, 8, dropout=0.5)
  feats = [jax.random.normal(jax.random.key(i), (2, 8 // 2 ** i, 8 // 2 ** i, 4)) for i in range(4)]
  v = head.init(jax.random.key(0), feats)
  v = jax.tree.map(lambda x: x, v)
  v["params"]["classifier"] = {"kernel": jnp.eye(8), "bias": jnp.zeros(8)}
  (lo, fused), _ = head.apply(v, feats, train=True, return_features=True, rngs={"dropout": jax.random.key(3)},
                              mutable=["batch_stats"])
  lo, fused = np.asarray(lo), np.asarray(fused)
  outcome = {}
  for n in range(2):
    for ch in range(8):
      kept = np.allclose(lo[n, ..., ch], 2 * fused[n, ..., ch], atol=1e-5)
      dropped = np.allclose(lo[n, ..., ch], 0)
      assert kept != dropped, (n, ch)                              # the whole channel, one way
      outcome[n, ch] = kept
  assert 0 < sum(outcome.values()) < 16                             # some kept, some dropped


def test_native_crop_is_an_unresized_window_of_each_sample():
  imgs = jnp.asarray(np.random.default_rng(0).normal(size=(5, 64, 64, 3)), jnp.float32)
  out = np.asarray(random_crop(jax.random.key(0), imgs, (32, 48)))
  assert out.shape == (5, 32, 48, 3)
  for b in range(5):                                                # an exact slice: no resampling
    hits = [(y, x) for y in range(33) for x in range(17)
            if np.array_equal(out[b], np.asarray(imgs[b, y:y + 32, x:x + 48]))]
    assert len(hits) == 1
  assert random_crop(jax.random.key(0), imgs, (0, 0)) is imgs
  with pytest.raises(ValueError, match="does not fit"):
    random_crop(jax.random.key(0), imgs, (96, 32))


def test_balanced_sampler_uses_every_frame_equally_and_always_the_newest():
  m = mem_lib.empty_memory(8, jnp.zeros((1,), jnp.float32))
  for v in range(5):                                                # slots 0..4 hold frames 0..4
    m = mem_lib.push(m, jnp.full((1,), float(v)))
  for seed in range(5):
    idx = np.asarray(mem_lib.sample_indices(m, jax.random.key(seed), 12, "balanced"))
    counts = np.bincount(idx, minlength=8)
    assert counts[5:].sum() == 0 and set(counts[:5].tolist()) <= {2, 3}
    assert idx[0] == 4                                              # the newest frame, always
  iid = [np.bincount(np.asarray(mem_lib.sample_indices(m, jax.random.key(s), 12)), minlength=8)
         for s in range(5)]
  assert any(c[4] == 0 or c[:5].max() > 3 for c in iid)             # i.i.d. draws do neither
  with pytest.raises(ValueError, match="window sampling"):
    mem_lib.sample_indices(m, jax.random.key(0), 4, "stratified")


def test_layer_group_drift_by_hand():
  assert layer_group(("params", "encoder", "block2_1", "mlp", "kernel")) == "encoder.stage2"
  assert layer_group(("params", "encoder", "patch_embed0", "kernel")) == "encoder.stage0"
  assert layer_group(("params", "encoder", "norm3", "scale")) == "encoder.stage3"
  assert layer_group(("params", "decode_head", "classifier", "kernel")) == "decode_head"
  a = {"params": {"encoder": {"block0_0": {"k": np.array([3.0, 4.0])}, "norm0": {"s": np.array([0.0])}},
                  "recon": {"k": np.array([1.0, 0.0])}}}
  b = {"params": {"encoder": {"block0_0": {"k": np.array([3.0, 5.0])}, "norm0": {"s": np.array([0.0])}},
                  "recon": {"k": np.array([1.0, 0.0])}}}
  d = layer_group_drift(b, a)
  np.testing.assert_allclose(d["encoder.stage0"], 1.0 / 5.0)
  assert d["recon"] == 0.0


def test_results_report_parameter_drift(tmp_path):
  from tests.helpers import tiny_config
  from ttt_jax.runner.run import run
  r = run(tiny_config(), tmp_path, progress=False)
  mean = r["param_drift"]["mean"]
  # TTT-MAE trains the encoder and the reconstruction head, never the main head.
  assert {"encoder.stage0", "recon"} <= set(mean) and "decode_head" not in mean
  assert all(0 < v < 1 for v in mean.values())
