"""Joint pretraining: a few steps, checkpoints, resume, and a loadable model."""
import json

import numpy as np

from ttt_jax.checkpoint.model_io import load_model
from ttt_jax.cli.config_io import load_config_file


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
