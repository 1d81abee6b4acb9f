"""Loading config files and applying KEY=VALUE overrides."""
from __future__ import annotations

import ast
import difflib
import importlib.util
from pathlib import Path

import ml_collections


def load_config_file(path) -> ml_collections.ConfigDict:
  """Imports a config file and returns its `get_config()`; `FILE.py:ARG` returns
  `get_config(ARG)`, the file's named variant (big_vision's convention)."""
  path, _, arg = str(path).partition(".py:")
  if arg:
    path += ".py"
  p = Path(path)
  if not p.is_file():
    raise FileNotFoundError(f"config file {p} does not exist")
  spec = importlib.util.spec_from_file_location(f"ttt_config_{p.stem}", p)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  if not hasattr(mod, "get_config"):
    raise ValueError(f"config file {p} defines no get_config()")
  return mod.get_config(arg) if arg else mod.get_config()


def _all_keys(cfg, prefix=""):
  for k, v in cfg.items():
    if isinstance(v, ml_collections.ConfigDict):
      yield from _all_keys(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}"


def _parse(raw: str, current, key: str):
  if isinstance(current, bool):
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
      return True
    if low in ("0", "false", "no", "off"):
      return False
    raise ValueError(f"{key}={raw}: expected a boolean (true/false)")
  if isinstance(current, str):
    return raw
  try:
    val = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    raise ValueError(f"{key}={raw}: expected a value of type {type(current).__name__}") from None
  if isinstance(current, float) and isinstance(val, int):
    val = float(val)
  if isinstance(current, tuple) and isinstance(val, list):
    val = tuple(val)
  if current is not None and not isinstance(val, type(current)):
    raise ValueError(f"{key}={raw}: expected a value of type {type(current).__name__}")
  return val


def apply_overrides(cfg: ml_collections.ConfigDict, pairs: list[str]) -> ml_collections.ConfigDict:
  """Sets dotted keys from `KEY=VALUE` strings; unknown keys are an error."""
  keys = list(_all_keys(cfg))
  for pair in pairs:
    if "=" not in pair:
      raise ValueError(f"override {pair!r}: expected KEY=VALUE, e.g. data.seed=7")
    key, raw = pair.split("=", 1)
    if key not in keys:
      near = difflib.get_close_matches(key, keys, n=3)
      hint = f"; did you mean {', '.join(near)}?" if near else ""
      raise ValueError(f"unknown config key {key!r}{hint}")
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = _parse(raw, node[leaf], key)
  return cfg
