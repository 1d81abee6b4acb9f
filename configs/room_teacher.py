"""TTT-KD's stand-in 2D teacher (see ttt_jax/models/room_teacher.py; it is not DINOv2):
a small CNN trained once to segment rooms rendered in random styles and looks, far
broader than either TTT-KD dataset's, then frozen and shipped.

  ttt-jax pretrain configs/room_teacher.py --out /tmp/teacher
  cp -r /tmp/teacher/model ttt_jax/assets/room_teacher
"""
import ml_collections


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.task = "room_teacher"
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(widths=(24, 48, 64), feature_dim=32,
                                           compute_dtype="float32"))   # or bfloat16 (training)
  c.data = ml_collections.ConfigDict(dict(seed=0, num_rooms=300, views=8, image_hw=(48, 64)))
  c.steps = 3000
  c.batch_size = 32
  c.lr = 3e-3
  c.warmup_steps = 100
  c.weight_decay = 1e-4
  c.save_every = 500
  c.log_every = 100
  if arg == "tiny":   # tests
    c.data.num_rooms, c.data.views, c.data.image_hw = 2, 2, (24, 32)
    c.steps, c.batch_size, c.save_every, c.log_every, c.warmup_steps = 4, 4, 2, 2, 1
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of room_teacher.py; expected '' or 'tiny'")
  return c
