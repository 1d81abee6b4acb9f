"""Main task only: the source model, no adaptation.

  ttt-jax run configs/main_task.py --out runs/main_task
"""
from ttt_jax.methods.defaults import video_config


def get_config():
  c = video_config()
  c.method.name = 'main_task'
  c.method.objective = 'none'
  c.method.mode = 'none'
  c.method.trainable = 'none'
  return c
