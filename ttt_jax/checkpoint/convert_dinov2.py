"""Hugging Face DINOv2 (`Dinov2Model` folder: config.json + model.safetensors) -> Flax ViT.

Reads with `safetensors.numpy` (no PyTorch). Accepts the hub's key names
(`attention.attention.query`, `attention.output.dense`, as `save_pretrained`
writes them) and transformers 5's module names (`attention.q_proj`, ...); a
`dinov2.` prefix (from a task model's checkpoint) is dropped. Refuses what the Flax
model does not implement (SwiGLU FFN, register tokens, non-RGB input) with the
field named.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from ttt_jax.models.vit import ViTConfig

_NEW_TO_HUB = [(r"attention\.q_proj", "attention.attention.query"), (r"attention\.k_proj", "attention.attention.key"),
               (r"attention\.v_proj", "attention.attention.value"), (r"attention\.o_proj", "attention.output.dense")]


def hf_config_to_ours(hf: dict, out_layers: tuple[int, ...] | None = None) -> ViTConfig:
  for key, ok, want in (("use_swiglu_ffn", lambda v: not v, "false"), ("num_channels", lambda v: v == 3, "3"),
                        ("hidden_act", lambda v: v == "gelu", "'gelu'"),
                        ("num_register_tokens", lambda v: not v, "0")):
    if key in hf and not ok(hf[key]):
      raise ValueError(f"DINOv2 config field {key}={hf[key]!r} is not supported; expected {want}")
  n = hf["num_hidden_layers"]
  if out_layers is None:   # DINOv2's DPT heads read 4 evenly spaced blocks, ending at the last
    out_layers = tuple(sorted({n - 1 - i * max(n // 4, 1) for i in range(min(4, n))}))
  return ViTConfig(hidden_size=hf["hidden_size"], num_hidden_layers=n,
                   num_attention_heads=hf["num_attention_heads"], mlp_ratio=int(hf.get("mlp_ratio", 4)),
                   patch_size=hf.get("patch_size", 14), image_size=hf.get("image_size", 518),
                   layer_norm_eps=hf.get("layer_norm_eps", 1e-6),
                   layerscale_value=hf.get("layerscale_value", 1.0), qkv_bias=hf.get("qkv_bias", True),
                   out_layers=tuple(out_layers))


def convert_state_dict(sd: dict[str, np.ndarray], cfg: ViTConfig) -> dict:
  """Hub-layout state dict -> Flax `params` of `models.vit.ViT`."""
  sd = {re.sub(r"^dinov2\.", "", k): v for k, v in sd.items()}
  for pat, rep in _NEW_TO_HUB:
    sd = {re.sub(pat, rep, k): v for k, v in sd.items()}
  used = set()

  def take(key):
    if key not in sd:
      raise ValueError(f"DINOv2 state dict has no {key!r} (has e.g. {sorted(sd)[:4]})")
    used.add(key)
    return np.asarray(sd[key], np.float32)

  heads, d = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
  g = cfg.image_size // cfg.patch_size
  pos = take("embeddings.position_embeddings")
  if pos.shape != (1, 1 + g * g, cfg.hidden_size):
    raise ValueError(f"position_embeddings {pos.shape} do not match image_size {cfg.image_size} / patch "
                     f"{cfg.patch_size} (expected {(1, 1 + g * g, cfg.hidden_size)})")
  params = {"embeddings": {
      "patch_kernel": take("embeddings.patch_embeddings.projection.weight").transpose(2, 3, 1, 0),
      "patch_bias": take("embeddings.patch_embeddings.projection.bias"),
      "cls_token": take("embeddings.cls_token"), "position_embeddings": pos}}
  ln = lambda k: {"scale": take(f"{k}.weight"), "bias": take(f"{k}.bias")}
  for i in range(cfg.num_hidden_layers):
    p = f"encoder.layer.{i}"
    att = {}
    for name in ("query", "key", "value"):
      att[name] = {"kernel": take(f"{p}.attention.attention.{name}.weight").T.reshape(cfg.hidden_size, heads, d)}
      if cfg.qkv_bias:
        att[name]["bias"] = take(f"{p}.attention.attention.{name}.bias").reshape(heads, d)
    att["dense"] = {"kernel": take(f"{p}.attention.output.dense.weight").T.reshape(heads, d, cfg.hidden_size),
                    "bias": take(f"{p}.attention.output.dense.bias")}
    params[f"layer_{i}"] = {
        "norm1": ln(f"{p}.norm1"), "norm2": ln(f"{p}.norm2"), "attention": att,
        "layer_scale1": take(f"{p}.layer_scale1.lambda1"), "layer_scale2": take(f"{p}.layer_scale2.lambda1"),
        "fc1": {"kernel": take(f"{p}.mlp.fc1.weight").T, "bias": take(f"{p}.mlp.fc1.bias")},
        "fc2": {"kernel": take(f"{p}.mlp.fc2.weight").T, "bias": take(f"{p}.mlp.fc2.bias")}}
  params["layernorm"] = ln("layernorm")
  left = sorted(k for k in sd if k not in used and k != "embeddings.mask_token" and not k.startswith("pooler"))
  if left:
    raise ValueError(f"DINOv2 state dict has weights the ViT does not use: {left[:5]}")
  return params


def convert_hf_folder(src, out_layers: tuple[int, ...] | None = None) -> tuple[dict, ViTConfig]:
  """`(params, cfg)` of the ViT from a `Dinov2Model.save_pretrained` folder."""
  src = Path(src)
  for f in ("config.json", "model.safetensors"):
    if not (src / f).is_file():
      raise FileNotFoundError(f"{src / f} not found: expected a Hugging Face Dinov2Model folder")
  cfg = hf_config_to_ours(json.loads((src / "config.json").read_text()), out_layers)
  return convert_state_dict(load_file(str(src / "model.safetensors")), cfg), cfg
