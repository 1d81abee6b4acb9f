"""Where a video step's time goes, for `benchmarks/drivers.py --profile`: the FLOPs
of a frame's work (XLA's cost analysis) and a device trace summarised per op.

Why: B0's adapting step ran at 0.66 s per frame on an H100 where its arithmetic
alone would take milliseconds; the FLOP count turns a cell's frames/s into an
achieved rate, and the trace says whether the device was busy (and with what)
or waited on the host.
"""
from __future__ import annotations

import collections
import dataclasses
import gzip
import json
from pathlib import Path

import jax

from ttt_jax.engine.state import Context


def step_inputs(runner, video_THWC):
  """What `runner`'s learner functions take on a video, before its first frame:
  `(state, ctx, data_T)`, the state for the whole video, its `Context` and the
  video's ticks (one per frame)."""
  data_T = runner.plan.make_ticks("v0", video_THWC)
  state = runner.state_for(data_T, len(jax.tree.leaves(data_T)[0]), 0)
  ctx = Context(frozen=state.frozen, stats=state.stats, method_state=state.method_state,
                ema=state.ema, anchor=state.anchor, hparams=state.hparams)
  return state, ctx, data_T


def frame_flops(runner, video_THWC) -> dict:
  """XLA's FLOP estimates of one frame's work under `runner`'s plan.

  Loops count once in XLA's cost analysis (a `lax.scan` body is one iteration),
  so give a runner whose model is unscanned and whose step has one micro-batch
  (same arithmetic: neither changes what is computed per sample).

  Args:
    runner: a `Runner` (`ttt_jax.runner.programs`).
    video_THWC: a video its plan reads (`T, H, W, 3` uint8).
  Returns:
    `predict`: FLOPs of one frame's prediction; `loss_grad_per_sample`: of the
    adaptation loss and its gradient on one sample (absent for a predict-only
    learner).
  """
  plan = runner.plan
  state, ctx, data_T = step_inputs(runner, video_THWC)
  flops = lambda fn, *args: float(jax.jit(fn).lower(*args).cost_analysis()["flops"])
  out = {"predict": flops(plan.learner.predict_fn, state.trainable, ctx,
                          jax.tree.map(lambda x: x[0], data_T))}
  if plan.learner.loss_fn is not None:
    one = jax.tree.map(lambda x: x[:1], data_T)
    vg = jax.value_and_grad(plan.learner.loss_fn, has_aux=True)
    out["loss_grad_per_sample"] = flops(vg, state.trainable, ctx, one, jax.random.key(0))
  return out


def config_frame_flops(config, model, video_THWC) -> dict:
  """`frame_flops` of a video run config on `model` (a `SourceModel`), counted
  unscanned and in one micro-batch, plus `per_frame`: one frame's total (its
  prediction, and when the config adapts, `method.steps_per_frame` steps on
  batches of `method.batch_size`; the count is linear in the batch)."""
  from ttt_jax.runner.run import make_runner
  c = config.copy_and_resolve_references()
  c.method.micro_batches = 1
  flat = dataclasses.replace(model, cfg=dataclasses.replace(model.cfg, scan_blocks=False))
  f = frame_flops(make_runner(c, model=flat)[0], video_THWC)
  steps = c.method.steps_per_frame if c.method.mode != "none" else 0
  return {**f, "per_frame": f["predict"] + steps * c.method.batch_size * f.get("loss_grad_per_sample", 0.0)}


def pretrain_step_flops(config) -> float:
  """XLA's FLOP estimate of one `ttt-jax pretrain` step of a SegFormer pretraining
  config (configs/pretrain_synthetic.py): both passes, their gradient, the
  optimizer. Counted from shapes alone (nothing is initialised or compiled) and
  unscanned (a scanned stage would count one block)."""
  import jax.numpy as jnp

  from ttt_jax.models.segformer import YSegFormer
  from ttt_jax.train import pretrain
  c = config.copy_and_resolve_references()
  mcfg = dataclasses.replace(pretrain.model_config(c), scan_blocks=False)
  tx = pretrain.make_optimizer(c)
  state = jax.eval_shape(lambda: pretrain.initial_state(c, mcfg, tx))
  b, h, w = c.batch_size, c.data.height, c.data.width
  step = pretrain.make_train_step(YSegFormer(mcfg), tx, c)
  lowered = step.lower(state, jax.ShapeDtypeStruct((b, h, w, 3), jnp.uint8),
                       jax.ShapeDtypeStruct((b, h, w), jnp.int32), jax.random.key(0))
  return float(lowered.cost_analysis()["flops"])


def _busy_us(intervals) -> float:
  """Length of the union of `(start, end)` intervals (microseconds)."""
  total, end = 0.0, float("-inf")
  for s, e in sorted(intervals):
    if e > end:
      total += e - max(s, end)
      end = e
  return total


def summarise_trace(trace_dir: str | Path, top: int = 12, lines: int = 3) -> dict:
  """A summary of the newest trace `jax.profiler.trace(trace_dir)` wrote.

  Args:
    trace_dir: the directory given to `jax.profiler.trace`.
    top: how many ops to list per line.
    lines: how many timeline lines (threads: a GPU's streams, TPU/GPU op lines,
      the CPU's XLA threads) to list.
  Returns:
    `process`: the timeline summarised (a device's, '/device:GPU:0' or a TPU's,
    else the host's); `span_ms`: its first event to its last; `busy_ms` and
    `busy_fraction`: time when any of its lines ran something; `lines`: the
    busiest lines, each with `name`, `busy_ms` and `top_ops` (`name`, `ms`,
    `count`, most total time first); `trace`: the file read.
  """
  files = sorted(Path(trace_dir).glob("plugins/profile/*/*.trace.json.gz"))
  if not files:
    raise FileNotFoundError(f"no *.trace.json.gz under {trace_dir}/plugins/profile")
  with gzip.open(files[-1]) as f:
    doc = json.load(f)
  events = doc["traceEvents"] if isinstance(doc, dict) else doc
  procs, threads = {}, {}
  for e in events:
    if e.get("ph") == "M" and e.get("name") == "process_name":
      procs[e["pid"]] = e["args"]["name"]
    elif e.get("ph") == "M" and e.get("name") == "thread_name":
      threads[(e["pid"], e["tid"])] = e["args"]["name"]
  devices = [p for p, n in procs.items() if n.startswith("/device:")]
  pid = devices[0] if devices else next(iter(procs), None)
  spans = collections.defaultdict(list)
  ops = collections.defaultdict(lambda: collections.defaultdict(lambda: [0.0, 0]))
  for e in events:
    if e.get("ph") != "X" or e.get("pid") != pid:
      continue
    tid, s, d = e.get("tid"), float(e["ts"]), float(e.get("dur", 0.0))
    spans[tid].append((s, s + d))
    o = ops[tid][e["name"]]
    o[0] += d
    o[1] += 1
  out = {"process": procs.get(pid), "trace": str(files[-1])}
  if not spans:
    return {**out, "span_ms": 0.0, "busy_ms": 0.0, "busy_fraction": 0.0, "lines": []}
  everything = [iv for ivs in spans.values() for iv in ivs]
  span = max(e for _, e in everything) - min(s for s, _ in everything)
  busy = _busy_us(everything)
  per_line = sorted(((_busy_us(iv), tid) for tid, iv in spans.items()), key=lambda bt: -bt[0])
  listed = [{"name": threads.get((pid, tid), str(tid)), "busy_ms": b / 1e3,
             "top_ops": [{"name": n, "ms": t / 1e3, "count": c}
                         for n, (t, c) in sorted(ops[tid].items(), key=lambda kv: -kv[1][0])[:top]]}
            for b, tid in per_line[:lines]]
  return {**out, "span_ms": span / 1e3, "busy_ms": busy / 1e3,
          "busy_fraction": busy / span if span else 0.0, "lines": listed}


def profiled(fn, trace_dir: str | Path) -> dict:
  """Runs `fn()` once under `jax.profiler.trace(trace_dir)`; its `summarise_trace`.
  Python frames are not traced (on the host's timeline they would outweigh XLA's)."""
  options = jax.profiler.ProfileOptions()
  options.python_tracer_level = 0
  with jax.profiler.trace(str(trace_dir), profiler_options=options):
    fn()
  return summarise_trace(trace_dir)
