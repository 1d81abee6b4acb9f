"""The eager PyTorch loop the reference code runs: speed comparison and the parity step.

  python benchmarks/torch_reference.py            # same model size, batch, frames as drivers.py

Per frame, as video-ttt-release does: push the frame to a 16-frame window, draw
a batch with replacement, give each sample its own crop and 16x16/0.85 patch
mask, one AdamW step on the reconstruction MSE through the shared encoder, then
predict the frame in eval mode. The optimizer is built as the reference's
detectron2 trainer builds it (`reference_optimizer`): every parameter of the
model in its own group, the encoder ("backbone") at 0.1 x the lr, weight decay
0.05 except on normalisation layers (WEIGHT_DECAY_NORM 0), the global norm of all
gradients clipped to 0.01 before each step, and its state kept from frame to frame
(TTT.RESTART_OPTIMIZER False; `--restart-optimizer` rebuilds it). The main head
is in the optimizer but gets no gradient from the reconstruction loss, so AdamW
leaves it alone. The model is transformers' SegFormer (same sizes as the JAX
'small' model, 4 input channels) with a second decode head for reconstruction
(48 outputs through `pixel_shuffle(4)`). Random weights: only time is measured here;
`tests/methods/test_torch_parity.py` feeds `adapt_step` and the ttt-jax step the
same weights, views and masks.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from ttt_jax.io.files import write_json
from ttt_jax.models.segformer import norm_groups

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def build(num_labels=8, *, head_norm="batch", classifier_dropout=0.1):
  """`(encoder, main head, reconstruction head)`: the 'small' Y-SegFormer in PyTorch.

  head_norm: 'batch' (SegFormer's BatchNorm) or 'group' (a GroupNorm of the JAX
    model's group count in its place: no running statistics, like the reference's
    Mask2Former heads). The reconstruction head has no dropout, as the JAX one.
  """
  from transformers import SegformerConfig
  from transformers.models.segformer.modeling_segformer import SegformerDecodeHead, SegformerModel
  cfg = SegformerConfig(hidden_sizes=[16, 32, 64, 96], depths=[1, 1, 2, 1],
                        num_attention_heads=[1, 1, 2, 4], decoder_hidden_size=64,
                        num_labels=num_labels, num_channels=4, drop_path_rate=0.0,
                        classifier_dropout_prob=classifier_dropout)
  enc = SegformerModel(cfg)
  head = SegformerDecodeHead(cfg)
  rcfg = SegformerConfig(**{**cfg.to_dict(), "num_labels": 48, "id2label": None, "label2id": None,
                            "classifier_dropout_prob": 0.0})
  recon = SegformerDecodeHead(rcfg)
  if head_norm == "group":
    for h in (head, recon):
      h.batch_norm = nn.GroupNorm(norm_groups(cfg.decoder_hidden_size), cfg.decoder_hidden_size, eps=1e-5)
  elif head_norm != "batch":
    raise ValueError(f"head_norm must be 'batch' or 'group', got {head_norm!r}")
  return enc, head, recon


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
          nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm)


class _ClippedAdamW(torch.optim.AdamW):
  """AdamW that clips the global norm of every group's gradients first (detectron2's
  'full_model' clipping, as the reference's trainer wraps its optimizer)."""

  def __init__(self, groups, clip_norm):
    super().__init__(groups)
    self.clip_norm = clip_norm

  def step(self, closure=None):
    if self.clip_norm > 0:
      torch.nn.utils.clip_grad_norm_([p for g in self.param_groups for p in g["params"]], self.clip_norm)
    return super().step(closure)


def reference_optimizer(enc, head, recon, *, lr=1e-4, backbone_multiplier=0.1, weight_decay=0.05,
                        weight_decay_norm=0.0, clip_norm=0.01):
  """The reference trainer's `build_optimizer`: one group per parameter, lr x
  `backbone_multiplier` in the encoder, `weight_decay_norm` on normalisation layers."""
  groups = []
  for part, modules in (("backbone", enc), ("head", head), ("recon", recon)):
    for _, module in modules.named_modules():
      for p in module.parameters(recurse=False):
        if not p.requires_grad:
          continue
        groups.append({"params": [p], "lr": lr * (backbone_multiplier if part == "backbone" else 1.0),
                       "weight_decay": weight_decay_norm if isinstance(module, _NORMS) else weight_decay})
  return _ClippedAdamW(groups, clip_norm)


def reconstruct(enc, recon, x4_B4HW):
  """Reconstructed normalised pixels `B, 3, H, W` of masked inputs `B, 4, H, W`."""
  feats = enc(x4_B4HW, output_hidden_states=True).hidden_states
  return F.pixel_shuffle(recon(feats), 4)


def adapt_step(enc, recon, opt, images_B3HW, mask_BHW):
  """One TTT-MAE step on given views (normalised, `B, 3, H, W`) and masks (`B, H, W`,
  1 = masked): train mode, MSE over all pixels, backward, clip, AdamW.

  Returns `(loss, grads)`: the loss and each parameter's gradient before clipping
  (a dict by id of the parameter; None where it got none).
  """
  enc.train()
  recon.train()
  m = mask_BHW[:, None].float()
  x4 = torch.cat([images_B3HW * (1 - m), m], 1)
  loss = F.mse_loss(reconstruct(enc, recon, x4), images_B3HW)
  opt.zero_grad(set_to_none=True)
  loss.backward()
  grads = {id(p): (None if p.grad is None else p.grad.detach().clone())
           for g in opt.param_groups for p in g["params"]}
  opt.step()
  return loss.detach(), grads


def masked_batch(frames_BHW3, patch=16, ratio=0.85, min_scale=0.5):
  """Views (resized crops) and patch masks of uint8 frames: `(B, 3, H, W), (B, H, W)`."""
  b, h, w, _ = frames_BHW3.shape
  x = frames_BHW3.permute(0, 3, 1, 2).float() / 255.0
  x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
  s = torch.sqrt(torch.empty(b).uniform_(min_scale, 1.0))
  theta = torch.zeros(b, 2, 3)
  theta[:, 0, 0] = s
  theta[:, 1, 1] = s
  theta[:, :, 2] = (torch.rand(b, 2) * 2 - 1) * (1 - s[:, None])
  grid = F.affine_grid(theta, (b, 3, h, w), align_corners=False)
  x = F.grid_sample(x, grid, align_corners=False)
  gh, gw = (h + patch - 1) // patch, (w + patch - 1) // patch
  n_mask = round(ratio * gh * gw)
  ranks = torch.rand(b, gh * gw).argsort(1).argsort(1)
  m = (ranks < n_mask).float().view(b, 1, gh, gw)
  m = F.interpolate(m, scale_factor=patch, mode="nearest")[:, 0, :h, :w]
  return x, m


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--height", type=int, default=64)
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--frames", type=int, default=32)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--window", type=int, default=16)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--restart-optimizer", action="store_true", help="rebuild AdamW every frame")
  p.add_argument("--json", default="benchmarks/results/torch_reference.json")
  a = p.parse_args(argv)
  torch.set_num_threads(a.threads)
  torch.manual_seed(0)
  from ttt_jax.data.synthetic import VideoSpec, make_video
  frames = torch.from_numpy(make_video(VideoSpec(seed=7000, num_frames=a.frames, height=a.height,
                                                 width=a.width))[0])
  enc, head, recon = build()

  def run(adapt: bool):
    window = []
    opt = reference_optimizer(enc, head, recon)
    for t in range(len(frames)):
      window = (window + [frames[t]])[-a.window:]
      if adapt:
        idx = torch.randint(0, len(window), (a.batch,))
        views, mask = masked_batch(torch.stack([window[i] for i in idx]))
        if a.restart_optimizer:
          opt = reference_optimizer(enc, head, recon)
        adapt_step(enc, recon, opt, views, mask)
      enc.eval(); head.eval()
      with torch.no_grad():
        x, _ = masked_batch(frames[t:t + 1], ratio=0.0, min_scale=1.0)
        feats = enc(torch.cat([x, torch.zeros_like(x[:, :1])], 1), output_hidden_states=True).hidden_states
        logits = F.interpolate(head(feats), size=(a.height, a.width), mode="bilinear", align_corners=False)
        logits.argmax(1)

  res = {}
  for name, adapt in (("predict-only", False), ("adapting", True)):
    run(adapt)  # warm
    t0 = time.perf_counter()
    run(adapt)
    res[name] = a.frames / (time.perf_counter() - t0)
  result = {"torch": torch.__version__, "threads": a.threads, "frame_size": [a.height, a.width],
            "batch": a.batch, "window": a.window, "frames": a.frames,
            "restart_optimizer": a.restart_optimizer, "fps": res}
  print(f"PyTorch eager (torch {torch.__version__}, {a.threads} threads), {a.height}x{a.width}, batch {a.batch}, "
        f"window {a.window}: predict-only {res['predict-only']:.1f} frames/s, adapting {res['adapting']:.1f} frames/s")
  print(f"wrote {write_json(a.json, result)}")
  return result


if __name__ == "__main__":
  main()
