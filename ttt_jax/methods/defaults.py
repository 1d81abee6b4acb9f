"""Default config of a video TTT run; every file under configs/ starts from it."""
from __future__ import annotations

import ml_collections


def video_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = m = ml_collections.ConfigDict()
  m.name = "online_ttt_mae"
  m.objective = "mae"            # none | mae | entropy | self_train | norm
  m.mode = "window"              # none | reset | implicit | window | explicit | offline | warmup_freeze
  m.window = 16                  # explicit memory k
  m.steps_per_frame = 1
  m.batch_size = 32
  m.trainable = "all"            # all | heads | decode_head | norm | none
  m.lr = 1e-4                    # head lr
  m.encoder_lr_mult = 0.1
  m.weight_decay = 0.05
  m.b1, m.b2 = 0.9, 0.999
  m.clip_norm = 0.01
  m.reset_opt_state = True       # the reference rebuilds the optimizer every frame
  m.ema_decay = 0.0              # > 0 keeps a momentum copy
  m.patch = 16
  m.mask_ratio = 0.85
  m.masked_only = False
  m.norm_pix = False
  m.crop_min_scale = 0.5         # each sample its own crop (area share in [min, 1])
  m.flip = True
  m.st_threshold = 0.9
  m.st_mask_ratio = 0.8
  m.class_balance_reset = False
  m.cb_tolerance = 1
  m.offline_iters = 0            # offline: optimizer steps after seeing all frames
  m.warmup_fraction = 0.1
  m.warmup_passes = 1

  c.model = md = ml_collections.ConfigDict()
  md.checkpoint = "builtin"      # a model dir, 'builtin' (shipped synthetic source model) or 'random'
  md.size = "tiny"               # used with checkpoint='random'
  md.init_seed = 0

  c.data = d = ml_collections.ConfigDict()
  d.name = "synthetic"           # synthetic | vspw | kitti_step
  d.root = ""
  d.split = "val"
  d.seed = 1000                  # held-out seeds start here; pretraining uses seeds < 1000
  d.num_videos = 4
  d.num_frames = 48
  d.height = 64
  d.width = 64
  d.shuffled = False
  d.max_severity = 1.0
  d.num_classes = 8

  c.engine = e = ml_collections.ConfigDict()
  e.driver = "scan"              # scan | stream | vmap | sharded
  e.seed = 0
  e.videos_per_batch = 0         # vmap/sharded: videos at once (0 = all, or the device count)
  e.distributed = False          # sharded over several hosts: jax.distributed.initialize() first
  c.lock()
  return c
