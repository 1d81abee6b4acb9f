"""One optimizer builder for every method, from a `method.optimizer` config block.

    optimizer.lr            base learning rate
    optimizer.lr_groups     ((path regex, lr multiplier), ...): the first matching
                            group sets a parameter's lr (e.g. the encoder at 0.1x);
                            parameters no group matches use `lr`
    optimizer.weight_decay, b1, b2   AdamW (decoupled weight decay)
    optimizer.no_decay      path regexes of parameters without weight decay (the
                            reference's detectron2 optimizer gives normalisation
                            layers weight decay 0: SOLVER.WEIGHT_DECAY_NORM); () = all
    optimizer.clip_norm     global-norm clip before AdamW; 0 = none

The learning rates are runtime values (`hparams['lr']`, `hparams['lr_<i>']`), so
runs that differ only in lr share one compiled program. Each group's lr is the
product taken in float64 and rounded once, as a Python constant would be.
"""
from __future__ import annotations

import jax
import optax

from ttt_jax.engine.state import path_keys, path_matcher


def lr_hparams(o) -> dict[str, float]:
  """The runtime learning rates of an optimizer block."""
  hp = {"lr": float(o.lr)}
  for i, (_, mult) in enumerate(o.lr_groups):
    hp[f"lr_{i}"] = float(o.lr) * float(mult)
  return hp


def make_optimizer(o):
  """`hparams -> optax.GradientTransformation` for an optimizer block: global-norm
  clip, then AdamW per learning-rate group."""
  groups = tuple((str(p), float(m)) for p, m in o.lr_groups)
  matchers = [path_matcher(p) for p, _ in groups]
  b1, b2, wd, clip = float(o.b1), float(o.b2), float(o.weight_decay), float(o.clip_norm)
  no_decay = path_matcher(tuple(o.get("no_decay", ())))

  def decay_mask(tree):
    return jax.tree_util.tree_map_with_path(lambda path, _: not no_decay(path_keys(path)), tree)

  def labels(tree):
    def label(path, _):
      return next((f"lr_{i}" for i, m in enumerate(matchers) if m(path_keys(path))), "lr")
    return jax.tree_util.tree_map_with_path(label, tree)

  def build(hparams) -> optax.GradientTransformation:
    adamw = lambda lr: optax.adamw(lr, b1=b1, b2=b2, weight_decay=wd, mask=decay_mask)
    if groups:
      names = ["lr"] + [f"lr_{i}" for i in range(len(groups))]
      t = optax.partition({n: adamw(hparams[n]) for n in names}, labels)
    else:
      t = adamw(hparams["lr"])
    return optax.chain(optax.clip_by_global_norm(clip), t) if clip > 0 else t
  return build
