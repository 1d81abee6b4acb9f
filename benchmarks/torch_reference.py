"""The eager PyTorch loop the reference code runs, for a side-by-side speed comparison.

  python benchmarks/torch_reference.py            # same model size, batch, frames as drivers.py

Per frame, as video-ttt-release does: push the frame to a 16-frame window, draw
a batch with replacement, give each sample its own crop and 16x16/0.85 patch
mask, one AdamW step (fresh optimizer state, global-norm clip 0.01) on the
reconstruction MSE through the shared encoder, then predict the frame in eval
mode. The model is transformers' SegFormer (same sizes as the JAX 'small' model,
4 input channels) with a second decode head for reconstruction. Random weights:
only time is measured.
"""
from __future__ import annotations

import argparse
import time

import torch

import torch.nn.functional as F

from ttt_jax.io.files import write_json


def build(num_labels=8):
  from transformers import SegformerConfig
  from transformers.models.segformer.modeling_segformer import SegformerDecodeHead, SegformerModel
  cfg = SegformerConfig(hidden_sizes=[16, 32, 64, 96], depths=[1, 1, 2, 1],
                        num_attention_heads=[1, 1, 2, 4], decoder_hidden_size=64,
                        num_labels=num_labels, num_channels=4, drop_path_rate=0.0)
  enc = SegformerModel(cfg)
  head = SegformerDecodeHead(cfg)
  rcfg = SegformerConfig(**{**cfg.to_dict(), "num_labels": 48})
  recon = SegformerDecodeHead(rcfg)
  return enc, head, recon


def masked_batch(frames_BHW3, patch=16, ratio=0.85, min_scale=0.5):
  b, h, w, _ = frames_BHW3.shape
  x = frames_BHW3.permute(0, 3, 1, 2).float() / 255.0
  mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
  std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
  x = (x - mean) / std
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
  m = F.interpolate(m, scale_factor=patch, mode="nearest")[:, :, :h, :w]
  return torch.cat([x * (1 - m), m], 1), x


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--height", type=int, default=64)
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--frames", type=int, default=32)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--window", type=int, default=16)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--json", default="benchmarks/results/torch_reference.json")
  a = p.parse_args(argv)
  torch.set_num_threads(a.threads)
  torch.manual_seed(0)
  from ttt_jax.data.synthetic import VideoSpec, make_video
  frames = torch.from_numpy(make_video(VideoSpec(seed=7000, num_frames=a.frames, height=a.height,
                                                 width=a.width))[0])
  enc, head, recon = build()
  params = list(enc.parameters()) + list(head.parameters()) + list(recon.parameters())

  def run(adapt: bool):
    window = []
    for t in range(len(frames)):
      window = (window + [frames[t]])[-a.window:]
      if adapt:
        enc.train(); recon.train()
        idx = torch.randint(0, len(window), (a.batch,))
        x4, target = masked_batch(torch.stack([window[i] for i in idx]))
        opt = torch.optim.AdamW([{"params": enc.parameters(), "lr": 1e-5},
                                 {"params": recon.parameters(), "lr": 1e-4}], weight_decay=0.05)
        feats = enc(x4, output_hidden_states=True).hidden_states
        out = F.pixel_shuffle(recon(feats), 4)
        loss = F.mse_loss(out, target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.01)
        opt.step()
      enc.eval(); head.eval()
      with torch.no_grad():
        x4, _ = masked_batch(frames[t:t + 1], ratio=0.0, min_scale=1.0)
        feats = enc(x4, output_hidden_states=True).hidden_states
        logits = F.interpolate(head(feats), size=(a.height, a.width), mode="bilinear", align_corners=False)
        logits.argmax(1)

  res = {}
  for name, adapt in (("predict-only", False), ("adapting", True)):
    run(adapt)  # warm
    t0 = time.perf_counter()
    run(adapt)
    res[name] = a.frames / (time.perf_counter() - t0)
  result = {"torch": torch.__version__, "threads": a.threads, "frame_size": [a.height, a.width],
            "batch": a.batch, "window": a.window, "frames": a.frames, "fps": res}
  print(f"PyTorch eager (torch {torch.__version__}, {a.threads} threads), {a.height}x{a.width}, batch {a.batch}, "
        f"window {a.window}: predict-only {res['predict-only']:.1f} frames/s, adapting {res['adapting']:.1f} frames/s")
  print(f"wrote {write_json(a.json, result)}")
  return result


if __name__ == "__main__":
  main()
