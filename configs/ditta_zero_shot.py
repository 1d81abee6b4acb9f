"""Zero-shot refinement: first-frame ISS prompts propagated through the whole video
(flow propagator) and painted over the ISS prediction at every frame.

  ttt-jax export configs/ditta_zero_shot.py --out runs/export_w10
  sam2-bridge targets --mode zero_shot --export-dir runs/export_w10 --out-dir runs/targets_zs
  ttt-jax run configs/ditta_zero_shot.py --out runs/ditta_zero_shot
"""
from ttt_jax.methods.defaults import ditta_config


def get_config(arg: str = ""):
  if arg:
    raise ValueError(f"this config has no variant {arg!r}")
  return ditta_config(warmup=0.1, kind="zero_shot", name="zero_shot", targets_dir="runs/targets_zs")
