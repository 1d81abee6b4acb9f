"""Hugging Face SegFormer (safetensors, PyTorch layout) -> Flax Y-SegFormer.

`ttt-jax convert segformer SRC DST`: SRC is a folder written by
`SegformerForSemanticSegmentation.save_pretrained` (config.json +
model.safetensors); DST a model directory (`model_io`). Reads with
`safetensors.numpy`, so no PyTorch is needed. The mask-channel input weights are
set to zero (unless the state dict's first patch embedding already takes 4
channels) and the reconstruction head is freshly initialised (from `key`), unless
the state dict has one: a `recon.*` head of the decode head's architecture with
48 outputs read through `pixel_shuffle(4)`, as `benchmarks/torch_reference.py`
builds the Y-model in PyTorch; its output channels are reordered from
pixel_shuffle's (c, ry, rx) to `depth_to_space`'s (ry, rx, c). With
`cfg.head_norm='group'` the heads' `batch_norm` entries are read as the weight and
bias of a GroupNorm put in its place (no running statistics).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import numpy as np
from flax import traverse_util
from safetensors.numpy import load_file

from ttt_jax.checkpoint.model_io import init_variables
from ttt_jax.models.segformer import SegFormerConfig

# transformers >= 5 module names -> the classic names that save_pretrained writes.
_NEW_TO_CLASSIC = [
    (r"segformer\.stages\.(\d+)\.patch_embeddings\.", r"segformer.encoder.patch_embeddings.\1."),
    (r"segformer\.stages\.(\d+)\.layer_norm\.", r"segformer.encoder.layer_norm.\1."),
    (r"segformer\.stages\.(\d+)\.blocks\.(\d+)\.", r"segformer.encoder.block.\1.\2."),
    (r"layernorm_before", "layer_norm_1"), (r"layernorm_after", "layer_norm_2"),
    (r"attention\.q_proj", "attention.self.query"), (r"attention\.k_proj", "attention.self.key"),
    (r"attention\.v_proj", "attention.self.value"), (r"attention\.o_proj", "attention.output.dense"),
    (r"attention\.sequence_reduction\.sequence_reduction", "attention.self.sr"),
    (r"attention\.sequence_reduction\.layer_norm", "attention.self.layer_norm"),
    (r"mlp\.fc1", "mlp.dense1"), (r"mlp\.fc2", "mlp.dense2"),
    (r"(decode_head|recon)\.linear_projections\.", r"\1.linear_c."),
]


def hf_config_to_ours(hf: dict) -> SegFormerConfig:
  if hf.get("num_channels", 3) not in (3, 4):
    raise ValueError(f"num_channels {hf['num_channels']}: expected RGB (3) or RGB + mask (4)")
  ratios = set(hf.get("mlp_ratios", [4]))
  if len(ratios) != 1:
    raise ValueError(f"per-stage mlp_ratios {hf['mlp_ratios']} are not supported")
  return SegFormerConfig(
      hidden_sizes=tuple(hf["hidden_sizes"]), depths=tuple(hf["depths"]),
      num_attention_heads=tuple(hf["num_attention_heads"]), sr_ratios=tuple(hf["sr_ratios"]),
      patch_sizes=tuple(hf["patch_sizes"]), strides=tuple(hf["strides"]),
      mlp_ratio=ratios.pop(), decoder_hidden_size=hf["decoder_hidden_size"],
      num_labels=len(hf["id2label"]) if "id2label" in hf else hf["num_labels"],
      num_channels=4,  # RGB + the mask channel, whether the source has it (4) or not (3)
      classifier_dropout=hf.get("classifier_dropout_prob", 0.1))


def _classic(name: str) -> str:
  for pat, rep in _NEW_TO_CLASSIC:
    name = re.sub(pat, rep, name)
  return name


def _dense(sd, prefix):
  return {"kernel": sd[prefix + ".weight"].T, "bias": sd[prefix + ".bias"]}


def _ln(sd, prefix):
  return {"scale": sd[prefix + ".weight"], "bias": sd[prefix + ".bias"]}


def _conv(sd, prefix, bias=True):
  out = {"kernel": sd[prefix + ".weight"].transpose(2, 3, 1, 0)}  # OIHW -> HWIO
  if bias:
    out["bias"] = sd[prefix + ".bias"]
  return out


def convert_state_dict(sd: dict[str, np.ndarray], cfg: SegFormerConfig, key: jax.Array):
  """Maps a classic-named HF state dict onto fresh Y-SegFormer variables."""
  sd = {_classic(k): np.asarray(v, np.float32) for k, v in sd.items()}
  variables = jax.tree.map(np.asarray, init_variables(cfg, key))
  params = variables["params"]
  enc = {}
  e = "segformer.encoder"
  for i in range(len(cfg.hidden_sizes)):
    pe = _conv(sd, f"{e}.patch_embeddings.{i}.proj")
    if i == 0 and pe["kernel"].shape[2] == 3:  # append the zero mask channel
      k = pe["kernel"]
      pe["kernel"] = np.concatenate([k, np.zeros((*k.shape[:2], 1, k.shape[3]), k.dtype)], axis=2)
    enc[f"patch_embed{i}"] = pe
    enc[f"patch_norm{i}"] = _ln(sd, f"{e}.patch_embeddings.{i}.layer_norm")
    enc[f"norm{i}"] = _ln(sd, f"{e}.layer_norm.{i}")
    for j in range(cfg.depths[i]):
      b = f"{e}.block.{i}.{j}"
      att = {n: _dense(sd, f"{b}.attention.self.{n}") for n in ("query", "key", "value")}
      att["output"] = _dense(sd, f"{b}.attention.output.dense")
      if cfg.sr_ratios[i] > 1:
        att["sr"] = _conv(sd, f"{b}.attention.self.sr")
        att["layer_norm"] = _ln(sd, f"{b}.attention.self.layer_norm")
      enc[f"block{i}_{j}"] = {
          "layer_norm_1": _ln(sd, f"{b}.layer_norm_1"), "layer_norm_2": _ln(sd, f"{b}.layer_norm_2"),
          "attention": att,
          "mlp": {"dense1": _dense(sd, f"{b}.mlp.dense1"), "dense2": _dense(sd, f"{b}.mlp.dense2"),
                  "dwconv": _conv(sd, f"{b}.mlp.dwconv.dwconv")}}
  head = _head(sd, "decode_head", cfg)
  recon = params["recon"]
  if any(k.startswith("recon.") for k in sd):
    recon = _head(sd, "recon", cfg)
    # pixel_shuffle reads channel c * 16 + ry * 4 + rx; depth_to_space (ry * 4 + rx) * 3 + c.
    r, c = 4, 3
    order = np.array([ch * r * r + ry * r + rx for ry in range(r) for rx in range(r) for ch in range(c)])
    recon["classifier"] = {"kernel": recon["classifier"]["kernel"][:, order],
                           "bias": recon["classifier"]["bias"][order]}
  new = {"encoder": enc, "decode_head": head, "recon": recon}
  _check_same_tree(new, params)
  stats = dict(variables.get("batch_stats", {}))
  if cfg.head_norm == "batch":
    for name in ("decode_head", "recon"):
      if f"{name}.batch_norm.running_mean" in sd:
        stats[name] = {"batch_norm": {"mean": sd[f"{name}.batch_norm.running_mean"],
                                      "var": sd[f"{name}.batch_norm.running_var"]}}
  return {"params": new, "batch_stats": stats} if stats else {"params": new}


def _head(sd, prefix, cfg: SegFormerConfig):
  """An all-MLP decode head (`decode_head` or `recon`) of a classic-named state dict."""
  head = {f"linear_c{i}": _dense(sd, f"{prefix}.linear_c.{i}.proj")
          for i in range(len(cfg.hidden_sizes))}
  head["linear_fuse"] = {"kernel": sd[f"{prefix}.linear_fuse.weight"][:, :, 0, 0].T}
  norm = {"batch": "batch_norm", "group": "group_norm", "layer": "layer_norm"}[cfg.head_norm]
  head[norm] = _ln(sd, f"{prefix}.batch_norm")
  head["classifier"] = {"kernel": sd[f"{prefix}.classifier.weight"][:, :, 0, 0].T,
                        "bias": sd[f"{prefix}.classifier.bias"]}
  return head


def _check_same_tree(new, ref):
  fn, fr = traverse_util.flatten_dict(new), traverse_util.flatten_dict(ref)
  if fn.keys() != fr.keys():
    raise ValueError(f"converted weights miss {sorted(fr.keys() - fn.keys())[:5]} "
                     f"and have extra {sorted(fn.keys() - fr.keys())[:5]}")
  for k in fr:
    if fn[k].shape != fr[k].shape:
      raise ValueError(f"converted weight {'/'.join(k)} has shape {fn[k].shape}, expected {fr[k].shape}")


def convert_hf_folder(src, key: jax.Array | None = None):
  """Returns `(variables, cfg)` from a `save_pretrained` folder."""
  src = Path(src)
  for f in ("config.json", "model.safetensors"):
    if not (src / f).is_file():
      raise FileNotFoundError(f"{src} is not a Hugging Face SegFormer folder: {f} is missing")
  cfg = hf_config_to_ours(json.loads((src / "config.json").read_text()))
  sd = load_file(str(src / "model.safetensors"))
  try:
    variables = convert_state_dict(sd, cfg, key if key is not None else jax.random.key(0))
  except KeyError as e:
    raise ValueError(f"{src / 'model.safetensors'}: missing weight {e} for the config in config.json") from e
  return variables, cfg
