"""Where a run's source model comes from: a model directory, the shipped one, or random."""
from __future__ import annotations

from pathlib import Path

import dataclasses

import jax

from ttt_jax.checkpoint.model_io import init_variables, load_model
from ttt_jax.models.segformer import segformer_config

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# 'builtin': the video-TTT source model (reference recipe, GroupNorm heads);
# 'builtin_bn': SegFormer with its BatchNorm decode head, DiTTA's ISS model.
BUILTINS = {"builtin": ASSETS / "ysegformer_small_synthetic",
            "builtin_bn": ASSETS / "segformer_small_synthetic"}
BUILTIN = BUILTINS["builtin"]
# TTT-KD's point model (PTv3 'small' with its two projectors), trained jointly on the
# 'office' rooms with the shipped stand-in teacher: configs/pretrain_ttt_kd.py.
POINT_BUILTIN = ASSETS / "point_seg_rooms"


def load_point_model(model_cfg, num_classes: int):
  """`(variables, PointSegConfig, meta)` of a point `config.model` block: 'builtin',
  'random' (`size`, `teacher_dim`) or a model directory."""
  from ttt_jax.checkpoint.model_io import load_model
  from ttt_jax.models import point_seg
  ck = model_cfg.checkpoint
  if ck == "random":
    rate = model_cfg.get("drop_path", -1.0)   # < 0: the size's stochastic-depth rate
    cfg = point_seg.point_seg_config(model_cfg.size, num_classes, model_cfg.teacher_dim,
                                     **({"drop_path": rate} if rate >= 0 else {}))
    return point_seg.init_variables(cfg, jax.random.key(model_cfg.init_seed)), cfg, {"source": "random init"}
  path = POINT_BUILTIN if ck == "builtin" else Path(ck)
  if ck == "builtin" and not (path / "model.json").exists():
    raise FileNotFoundError(f"the shipped point model is missing at {path}; train it with "
                            "`ttt-jax pretrain configs/pretrain_ttt_kd.py --out <dir>`")
  variables, cfg, meta = load_model(path, "point_seg")
  if cfg.num_classes != num_classes:
    raise ValueError(f"checkpoint {path} predicts {cfg.num_classes} classes but the dataset has "
                     f"{num_classes} (data.num_classes)")
  return variables, cfg, {"source": str(path), **meta}


def load_source_model(model_cfg, num_classes: int):
  """Returns `(variables, SegFormerConfig, meta)` for a `config.model` block.

  `checkpoint`: 'builtin' (the small model `ttt-jax pretrain configs/pretrain_synthetic.py`
  trained on the synthetic source domain, shipped in the package), 'builtin_bn' (the
  same size with SegFormer's BatchNorm head, `pretrain_synthetic.py:joint_bn`), 'random'
  (fresh init of `size`, for smoke tests) or a model directory.
  `drop_path_rate` >= 0 replaces the model's stochastic-depth rate (no weight changes).
  """
  ck = model_cfg.checkpoint
  if ck == "random":
    cfg = segformer_config(model_cfg.size, num_classes, head_norm=model_cfg.get("head_norm", "batch"))
    variables, meta = init_variables(cfg, jax.random.key(model_cfg.init_seed)), {"source": "random init"}
    return variables, _with_drop_path(cfg, model_cfg), meta
  path = BUILTINS.get(ck, Path(ck))
  if ck in BUILTINS and not (path / "model.json").exists():
    raise FileNotFoundError(
        f"the shipped source model is missing at {path}; train it with "
        "`ttt-jax pretrain configs/pretrain_synthetic.py --out <dir>` and pass model.checkpoint=<dir>")
  variables, cfg, meta = load_model(path, "segformer")
  cfg = _with_drop_path(cfg, model_cfg)
  if cfg.num_labels != num_classes:
    raise ValueError(f"checkpoint {path} predicts {cfg.num_labels} classes but the dataset has "
                     f"{num_classes} (data.num_classes)")
  return variables, cfg, {"source": str(path), **meta}


def _with_drop_path(cfg, model_cfg):
  """The run's compute options on the model: stochastic depth (< 0: the model's own),
  rematerialisation, the compute dtype and scanned encoder stages."""
  rate = model_cfg.get("drop_path_rate", -1.0)
  cfg = dataclasses.replace(cfg, drop_path_rate=rate) if rate >= 0 else cfg
  return cfg.with_compute_options(model_cfg)


def source_model(config) -> "SourceModel":
  """The `SourceModel` of a run config (`config.model`, classes from `config.data`)."""
  from ttt_jax.methods.base import SourceModel
  load = load_point_model if config.model.get("arch", "segformer") == "point_seg" else load_source_model
  variables, cfg, meta = load(config.model, num_classes=config.data.num_classes)
  return SourceModel(variables=variables, cfg=cfg, meta=meta)
