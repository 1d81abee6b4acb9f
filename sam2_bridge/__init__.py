"""The PyTorch bridge: runs SAM2 video propagation and DINOv2 features once and
writes them as cached arrays for the JAX side (never imports jax).

`sam2_bridge.cache_schema` is the numpy-only contract both halves import.
"""
