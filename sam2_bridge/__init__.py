"""The PyTorch bridge: runs SAM2 video propagation and DINOv2 features once and
writes them as cached arrays for the JAX side (never imports jax).

    cache_schema.py     the numpy-only contract both halves import
    video_io.py         frames folder or .npy -> uint8 T x H x W x 3
    propagators.py      the propagator interface; optical-flow propagator (OpenCV)
    sam2_propagator.py  SAM2's video predictor behind that interface (torch, sam2)
    targets.py          DiTTA's prompt sampling and bidirectional propagation; zero-shot
    features.py         DINOv2 patch features (transformers)
    cli.py              the `sam2-bridge` command
"""
