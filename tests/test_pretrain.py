"""Joint pretraining: a few steps, checkpoints, resume, and a loadable model."""
import json

import numpy as np

from ttt_jax.checkpoint.model_io import load_model
from ttt_jax.cli.config_io import load_config_file
from tests.helpers import trees_equal


def _cfg(steps):
  c = load_config_file("configs/pretrain_synthetic.py")
  c.model.size = "tiny"
  c.data.num_images, c.data.height, c.data.width = 8, 32, 32
  c.steps, c.batch_size, c.save_every, c.log_every = steps, 2, 2, 1
  return c


def test_pretrain_resumes_and_writes_model(tmp_path):
  from ttt_jax.train.pretrain import pretrain
  assert pretrain(_cfg(4), tmp_path, progress=False, stop_at=2) is None  # "killed" after step 2
  assert (tmp_path / "checkpoints" / "2").exists() and not (tmp_path / "model").exists()
  d = pretrain(_cfg(4), tmp_path, progress=False)  # resumes at step 2, not from scratch
  v, cfg, meta = load_model(d)
  assert cfg.num_labels == 8 and meta["log"][0]["step"] == 3
  fresh = pretrain(_cfg(4), tmp_path / "fresh", progress=False)
  v2, _, _ = load_model(fresh)
  # Resumed and uninterrupted training agree.
  for a, b in zip(*(np.asarray(x) for x in (v["params"]["decode_head"]["classifier"]["kernel"],
                                            v2["params"]["decode_head"]["classifier"]["kernel"]))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert json.loads((d / "model.json").read_text())["arch"] == "segformer"


def test_mae_phase_then_probe_with_colour_jitter(tmp_path):
  """mae_steps: reconstruction alone, main head untouched; then encoder_lr_mult=0
  keeps the MAE encoder fixed while the heads train (and a resume crosses phases)."""
  import jax
  import orbax.checkpoint as ocp
  from ttt_jax.checkpoint.model_io import init_variables
  from ttt_jax.models.segformer import segformer_config
  from ttt_jax.train.pretrain import pretrain
  c = _cfg(4)
  c.mae_steps, c.encoder_lr_mult, c.photometric = 2, 0.0, True
  assert pretrain(c, tmp_path, progress=False, stop_at=2) is None
  with ocp.CheckpointManager(tmp_path / "checkpoints") as m:
    mid = m.restore(2, args=ocp.args.StandardRestore())["params"]
  init = init_variables(segformer_config("tiny", 8), jax.random.key(c.seed), (32, 32))["params"]
  final = load_model(pretrain(c, tmp_path, progress=False))[0]["params"]
  assert trees_equal(mid["decode_head"], init["decode_head"])      # phase 1 leaves the main head alone
  assert not trees_equal(mid["encoder"], init["encoder"]) and not trees_equal(mid["recon"], init["recon"])
  assert trees_equal(final["encoder"], mid["encoder"])             # phase 2 probes a fixed encoder
  assert not trees_equal(final["decode_head"], mid["decode_head"])
