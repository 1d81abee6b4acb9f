"""Where a run's source model comes from: a model directory, the shipped one, or random."""
from __future__ import annotations

from pathlib import Path

import jax

from ttt_jax.checkpoint.model_io import init_variables, load_model
from ttt_jax.models.segformer import segformer_config

BUILTIN = Path(__file__).resolve().parent.parent / "assets" / "segformer_small_synthetic"


def load_source_model(model_cfg, num_classes: int):
  """Returns `(variables, SegFormerConfig, meta)` for a `config.model` block.

  `checkpoint`: 'builtin' (the small model `ttt-jax pretrain configs/pretrain_synthetic.py`
  trained on the synthetic source domain, shipped in the package), 'random'
  (fresh init of `size`, for smoke tests) or a model directory.
  """
  ck = model_cfg.checkpoint
  if ck == "random":
    cfg = segformer_config(model_cfg.size, num_classes)
    return init_variables(cfg, jax.random.key(model_cfg.init_seed)), cfg, {"source": "random init"}
  path = BUILTIN if ck == "builtin" else Path(ck)
  if ck == "builtin" and not (path / "model.json").exists():
    raise FileNotFoundError(
        f"the shipped source model is missing at {path}; train it with "
        "`ttt-jax pretrain configs/pretrain_synthetic.py --out <dir>` and pass model.checkpoint=<dir>")
  variables, cfg, meta = load_model(path)
  if cfg.num_labels != num_classes:
    raise ValueError(f"checkpoint {path} predicts {cfg.num_labels} classes but the dataset has "
                     f"{num_classes} (data.num_classes)")
  return variables, cfg, {"source": str(path), **meta}
