"""Source model of the synthetic benchmark: joint main + reconstruction training.

  ttt-jax pretrain configs/pretrain_synthetic.py --out /tmp/pretrain
  # the shipped model: cp -r /tmp/pretrain/model ttt_jax/assets/segformer_small_synthetic
  # variants (benchmarks/source_probe.py compares them):
  ttt-jax pretrain configs/pretrain_synthetic.py photometric=True --out /tmp/src_jitter
  ttt-jax pretrain configs/pretrain_synthetic.py photometric=True mae_steps=1500 encoder_lr_mult=0.0 \
      --out /tmp/src_probe
"""
import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(size="small"))
  c.data = ml_collections.ConfigDict(dict(seed=1, num_images=1024, height=64, width=64, num_classes=8))
  c.steps = 3000
  c.batch_size = 16
  c.lr = 2e-3
  c.warmup_steps = 100
  c.weight_decay = 0.05
  c.recon_weight = 1.0
  c.photometric = False          # SegFormer's colour jitter (brightness, contrast, saturation)
  c.mae_steps = 0                # reconstruction-only steps first (of `steps`)
  c.encoder_lr_mult = 1.0        # encoder lr / heads' lr after them; 0 = frozen MAE encoder
  c.patch = 16
  c.mask_ratio = 0.85
  c.crop_min_scale = 0.5
  c.save_every = 500
  c.log_every = 50
  return c
