"""Source model of the synthetic benchmark, in the reference's recipe (video-ttt-release).

A main-task model first (`main_steps` of cross-entropy alone), then joint training with
the reconstruction head added: a main-task-dominated loss (CE + 0.1 x MSE), the encoder
at 0.1 x the heads' lr, stochastic depth in the encoder. Heads normalised by GroupNorm
(no running statistics, as the reference's Mask2Former heads).

  ttt-jax pretrain configs/pretrain_synthetic.py --out /tmp/pretrain
  # the shipped model: cp -r /tmp/pretrain/model ttt_jax/assets/ysegformer_small_synthetic
  # the earlier recipe (BatchNorm heads, joint from scratch, CE + 1.0 x MSE), DiTTA's ISS model:
  ttt-jax pretrain configs/pretrain_synthetic.py:joint_bn --out /tmp/src_bn
  # variants (benchmarks/source_probe.py compares them):
  ttt-jax pretrain configs/pretrain_synthetic.py photometric=True --out /tmp/src_jitter
  # issue 14's B2 source at 256 x 256 (bfloat16, data parallel; for an accelerator), and
  # its BatchNorm twin for DiTTA's ISS model:
  ttt-jax pretrain configs/pretrain_synthetic.py:b2 --out /tmp/src_b2
  ttt-jax pretrain configs/pretrain_synthetic.py:b2,joint_bn --out /tmp/src_b2_bn
"""
import ml_collections


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(size="small", head_norm="group", drop_path_rate=0.1,
                                           compute_dtype="float32",  # or bfloat16 (f32 state)
                                           remat="none", scan_blocks=False))  # memory, compile time
  c.data_parallel = 0            # devices the batch is split over: 0 one, -1 all, N the first N
  c.data = ml_collections.ConfigDict(dict(seed=1, num_images=1024, height=64, width=64, num_classes=8))
  c.steps = 3500
  c.batch_size = 16
  c.lr = 2e-3
  c.warmup_steps = 100
  c.weight_decay = 0.05
  c.recon_weight = 0.1           # joint phase: CE + 0.1 x MSE, the main task dominates
  c.photometric = False          # SegFormer's colour jitter (brightness, contrast, saturation)
  c.main_steps = 2000            # main task alone first (of `steps`); the recon head waits
  c.mae_steps = 0                # or: reconstruction alone first
  c.encoder_lr_mult = 0.1        # encoder lr / heads' lr after the first phase
  c.patch = 16
  c.mask_ratio = 0.85
  c.crop_min_scale = 0.5
  c.save_every = 500
  c.log_every = 50
  for part in filter(None, arg.split(",")):  # variants combine: 'b2,joint_bn'
    if part == "joint_bn":  # the recipe of the shipped BatchNorm model (segformer_small_synthetic)
      c.model.head_norm, c.model.drop_path_rate = "batch", 0.0
      c.steps, c.recon_weight, c.main_steps, c.encoder_lr_mult = 3000, 1.0, 0, 1.0
    elif part == "b2":  # issue 14's larger source model for an accelerator: B2 at 256 x 256,
      # bfloat16 compute, the batch split over every local device
      c.model.size, c.model.compute_dtype, c.data_parallel = "b2", "bfloat16", -1
      c.data.height = c.data.width = 256
    else:
      raise ValueError(f"unknown variant {part!r} of pretrain_synthetic.py; expected 'joint_bn' "
                       "or 'b2', or both joined by a comma")
  return c
