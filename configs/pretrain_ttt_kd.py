"""TTT-KD's source model: joint training (class head + feature projector to the stand-in
teacher) on the 'office' rooms' training split (ttt_jax/train/point_pretrain.py).

  ttt-jax pretrain configs/pretrain_ttt_kd.py --out /tmp/kd_src
  cp -r /tmp/kd_src/model ttt_jax/assets/point_seg_rooms
"""
import ml_collections


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.task = "ttt_kd"
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(size="demo", compute_dtype="float32"))   # or bfloat16
  c.data = ml_collections.ConfigDict(dict(dataset="office", seed=0, num_scenes=64, size="demo"))
  c.num_points = 2048
  c.teacher_path = ""            # '' = the shipped stand-in teacher
  c.tolerance = 0.1
  c.distance = "cosine"
  c.kd_weight = 1.0
  c.steps = 1500
  c.lr = 2e-3
  c.warmup_steps = 100
  c.weight_decay = 0.05
  c.save_every = 250
  c.log_every = 50
  if arg == "tiny":   # tests
    c.model.size = "tiny"
    c.data.num_scenes, c.data.size, c.num_points = 2, "tiny", 1024
    c.steps, c.save_every, c.log_every, c.warmup_steps = 4, 2, 2, 1
  elif arg:
    raise ValueError(f"unknown variant {arg!r} of pretrain_ttt_kd.py; expected '' or 'tiny'")
  return c
