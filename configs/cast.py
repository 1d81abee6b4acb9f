"""CAST (teacher adaptation, student distillation, student refinement) on the
synthetic instance benchmark (ttt_jax/train/cast.py).

  ttt-jax pretrain configs/cast.py --out /tmp/cast            # all three stages
  ttt-jax pretrain configs/cast.py stage=student --out /tmp/cast

Variants (`get_config(arg)`): '' the embedded CPU default ('demo' student and its
larger 'demo_teacher' at 112 x 112), 'tiny' (tests), 'paper' (the paper's sizes
and settings, for Cityscapes at 518 px on an accelerator: set data.name and
data.root), 'foundation' and 'foundation_student' (the starting models of
benchmarks/cast.py: each architecture trained on generic shapes; `<role>.init_model`
starts a stage from one).
"""
import ml_collections


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.task = "cast"
  c.stage = "all"
  c.seed = 0
  c.num_classes = 4
  c.max_targets = 16
  c.image_hw = (112, 112)
  c.threshold = 0.3          # pseudo-label score threshold (paper)
  c.eval_batch = 16
  c.save_every = 100
  c.log_every = 20
  c.data = ml_collections.ConfigDict(dict(
      name="synthetic", seed=0, size="demo", num_train=400, labelled_fraction=0.1, num_val=100,
      root="", train_json="", val_json="", image_dir="", limit=0))
  c.model = ml_collections.ConfigDict(dict(patch_size=14, compute_dtype="float32"))   # or bfloat16
  # Paper: teacher AdamW wd 0.01, batch 4; student wd 0.05, batch 8, clip 0.1, dropout 0.1;
  # contrastive weight 0.2; mask 5 / class 2 loss weights.
  c.teacher = ml_collections.ConfigDict(dict(
      size="demo_teacher", init_model="", init_encoder="", lr=3e-4, weight_decay=0.01, clip=1.0, dropout=0.0,
      batch=4, unlabelled_batch=4, steps_sup=600, steps=600, lambda_semi=1.0, lambda_pxl=0.2))
  c.student = ml_collections.ConfigDict(dict(
      size="demo", init_model="", init_encoder="", lr=3e-4, weight_decay=0.05, clip=0.1, dropout=0.1,
      batch=4, unlabelled_batch=4, steps=900, lambda_semi=1.0, lambda_pxl=0.2,
      box_masks=""))   # a `sam2-bridge boxes` cache: SAM2's masks for the teacher's pseudo-label boxes
  c.refine = ml_collections.ConfigDict(dict(lr=1e-4, weight_decay=0.05, clip=0.1, batch=8, steps=200))
  c.loss = ml_collections.ConfigDict(dict(
      class_weight=2.0, mask_weight=5.0, dice_weight=5.0, no_object_weight=0.1,
      num_points=1024, oversample=3.0, importance=0.75, match_points=1024))
  # The reference's training augmentation of every batch (Mask2Former's instance mapper):
  # scale jitter 0.5 to 2.0 in 16 steps with crop or pad, SSD colour jitter, flip.
  # min_scale = max_scale = 1 and colour False leave flips alone.
  c.augment = ml_collections.ConfigDict(dict(min_scale=0.5, max_scale=2.0, num_scales=16, colour=True, flip=True))
  c.contrast = ml_collections.ConfigDict(dict(
      embed_dim=128, num_negatives=128, temperature=0.2, final_temperature=0.0, decay_steps=90000,
      sampler="fusion", pseudo="paper", hinge=0.0, strong_grad=True, max_anchors=0,
      bank_size=0, bank_push=64))
  if arg == "tiny":   # tests: seconds
    c.image_hw = (56, 56)
    c.data.size, c.data.num_train, c.data.num_val, c.data.labelled_fraction = "tiny", 8, 4, 0.25
    c.teacher.size = c.student.size = "tiny"
    c.teacher.steps_sup = c.teacher.steps = c.student.steps = c.refine.steps = 2
    c.teacher.batch = c.teacher.unlabelled_batch = c.student.batch = c.student.unlabelled_batch = 2
    c.refine.batch = 2
    # Every stage the same settings: the two step programs (supervised; with pseudo-labels
    # and the pixel loss) compile once for the four stages.
    c.student.dropout, c.student.weight_decay, c.student.clip = 0.0, 0.01, 1.0
    c.refine.lr, c.refine.weight_decay, c.refine.clip = 3e-4, 0.01, 1.0
    c.max_targets, c.eval_batch, c.save_every, c.log_every = 8, 4, 2, 1
    c.loss.num_points = c.loss.match_points = 64
    c.contrast.num_negatives = 16
    c.threshold = 0.0   # a random teacher's scores are low; keep some pseudo-labels
  elif arg == "paper":
    c.image_hw = (518, 1036)
    c.num_classes, c.max_targets = 8, 64
    c.data.name = "cityscapes"
    c.teacher.size, c.student.size = "base", "small"
    c.teacher.lr = c.student.lr = 1e-4
    c.teacher.steps_sup, c.teacher.steps, c.student.steps, c.refine.steps = 1000, 5000, 90000, 2000
    c.student.batch, c.student.unlabelled_batch = 8, 8
    c.student.weight_decay = 0.05
    c.loss.num_points = c.loss.match_points = 12544
    c.contrast.num_negatives, c.contrast.temperature = 256, 0.2
    c.contrast.max_anchors = 4096
    c.save_every, c.log_every = 1000, 100
  elif arg in ("foundation", "foundation_student"):
    # The foundation models the benchmark starts from (the paper's DINOv2 stand-in): the
    # teacher's ('foundation') or the student's architecture trained with full labels
    # on generic shapes (data.shapes), not on the benchmark's images or classes:
    #   ttt-jax pretrain configs/cast.py:foundation --out F; then teacher.init_model=F/teacher_sup/model
    c.stage = "teacher_sup"
    c.data.name, c.data.num_train, c.data.labelled_fraction, c.data.num_val = "shapes", 2000, 1.0, 100
    if arg == "foundation_student":
      c.teacher.size = c.student.size
    c.teacher.lr, c.teacher.steps_sup, c.teacher.batch = 1e-3, 1500, 8
    c.save_every, c.log_every = 250, 50
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of cast.py; expected '', 'tiny', 'paper', 'foundation' "
                     "or 'foundation_student'")
  return c
