"""The synthetic benchmark: procedural street-like videos under a drifting domain shift.

Seeded and deterministic (numpy + OpenCV). Each video has per-pixel labels of
`NUM_CLASSES` classes, textured regions, moving objects (cars, people), a panning
camera, and a domain shift whose mix of types (noise, blur, fog/low contrast,
darkness/colour cast, JPEG-like compression) and severity drift within the video.
Source-domain stills are the same scenes rendered clean, for pretraining.

Arrays: frames `T, H, W, 3` uint8 RGB; labels `T, H, W` uint8 class ids.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

CLASSES = ("sky", "road", "sidewalk", "building", "vegetation", "car", "person", "pole")
NUM_CLASSES = len(CLASSES)
SHIFTS = ("noise", "blur", "fog", "dark", "jpeg")
IGNORE = 255

_BASE_RGB = {  # class -> base colour; instances vary around it
    "sky": (120, 170, 230), "road": (90, 90, 95), "sidewalk": (170, 150, 140),
    "building": (150, 110, 90), "vegetation": (60, 130, 50), "car": (200, 40, 40),
    "person": (230, 180, 60), "pole": (140, 140, 160)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoSpec:
  """What `make_video` renders."""
  seed: int
  num_frames: int = 48
  height: int = 64
  width: int = 64
  shift: bool = True          # False: the clean source domain
  max_severity: float = 1.0   # scales every corruption


# ---------------------------------------------------------------------------
# Scene
# ---------------------------------------------------------------------------


def _noise_texture(rng, h, w, scale):
  """Smooth value noise in [-1, 1] of the given feature size (pixels)."""
  gh, gw = max(2, int(h / scale) + 2), max(2, int(w / scale) + 2)
  g = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
  return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def _tint(rng, name, jitter=25):
  return np.clip(np.array(_BASE_RGB[name]) + rng.integers(-jitter, jitter + 1, 3), 0, 255)


def _fill(img, lab, mask, cls, rgb, tex, amp):
  img[mask] = np.clip(rgb[None, :] + amp * tex[mask][:, None], 0, 255)
  lab[mask] = cls


def _background(rng, h, w):
  """Static canvas (image float32 H x W x 3, labels uint8 H x W), wider than a frame."""
  img = np.zeros((h, w, 3), np.float32)
  lab = np.zeros((h, w), np.uint8)
  yy, xx = np.mgrid[0:h, 0:w]
  horizon = int(h * rng.uniform(0.35, 0.5))
  c = CLASSES.index
  sky = yy < horizon
  _fill(img, lab, sky, c("sky"), _tint(rng, "sky"), _noise_texture(rng, h, w, 12) + (yy / h), 25)
  ground = ~sky
  _fill(img, lab, ground, c("sidewalk"), _tint(rng, "sidewalk"), _noise_texture(rng, h, w, 2), 20)
  # Road: a band widening toward the bottom.
  left = w * 0.5 - (yy - horizon) * rng.uniform(0.6, 1.2) - w * 0.1
  right = w * 0.5 + (yy - horizon) * rng.uniform(0.6, 1.2) + w * 0.1
  road = ground & (xx > left) & (xx < right) & (yy > horizon + 1)
  tex = _noise_texture(rng, h, w, 1.5) + 2.0 * ((xx % 16 < 2) & (yy % 8 < 4)) * (np.abs(xx - w / 2) < w * 0.3)
  _fill(img, lab, road, c("road"), _tint(rng, "road", 10), tex, 18)
  # Buildings along the horizon, with window grids.
  x = 0
  while x < w:
    bw = int(rng.integers(max(6, w // 20), max(8, w // 6)))
    bh = int(rng.integers(h // 8, int(horizon * 0.95) + 1))
    if rng.uniform() < 0.85:
      m = np.zeros((h, w), bool)
      m[max(0, horizon - bh):horizon + 2, x:x + bw] = True
      win = ((yy % 6 < 3) & (xx % 5 < 2)).astype(np.float32)
      _fill(img, lab, m, c("building"), _tint(rng, "building", 40), win * 1.5 - 0.5 + 0.3 * _noise_texture(rng, h, w, 3), 35)
    x += bw + int(rng.integers(0, 4))
  # Trees: blobs in front of buildings and on the sidewalk.
  for _ in range(int(rng.integers(3, 7))):
    cx, cy = int(rng.uniform(0, w)), int(horizon + rng.uniform(-0.15, 0.05) * h)
    r = int(rng.uniform(0.05, 0.12) * h) + 2
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (cx, cy), (r, int(r * 1.3)), 0, 0, 360, 1, -1)
    cv2.rectangle(m, (cx - 1, cy), (cx + 1, min(h - 1, cy + 2 * r)), 1, -1)
    _fill(img, lab, m.astype(bool), c("vegetation"), _tint(rng, "vegetation"), _noise_texture(rng, h, w, 1.2), 40)
  # Poles.
  for _ in range(int(rng.integers(2, 5))):
    px = int(rng.uniform(0, w))
    m = np.zeros((h, w), bool)
    m[int(horizon - rng.uniform(0.05, 0.2) * h):int(horizon + 0.2 * h), px:px + max(1, w // 100)] = True
    _fill(img, lab, m, c("pole"), _tint(rng, "pole"), np.zeros((h, w), np.float32), 0)
  return img, lab, horizon


@dataclasses.dataclass
class _Mover:
  cls: str
  x: float
  y: float
  vx: float
  size: float
  rgb: np.ndarray


def _draw_mover(img, lab, m: _Mover, tex) -> np.ndarray:
  """Draws the mover; returns its mask (bool `H, W`)."""
  mb = _mover_mask(lab.shape, m)
  _fill(img, lab, mb, CLASSES.index(m.cls), m.rgb, tex, 30)
  return mb


def _mover_mask(shape_HW, m: _Mover) -> np.ndarray:
  h, w = shape_HW
  mask = np.zeros((h, w), np.uint8)
  s = m.size
  if m.cls == "car":
    cv2.rectangle(mask, (int(m.x - s), int(m.y - 0.5 * s)), (int(m.x + s), int(m.y + 0.3 * s)), 1, -1)
    cv2.rectangle(mask, (int(m.x - 0.55 * s), int(m.y - 0.95 * s)), (int(m.x + 0.5 * s), int(m.y - 0.4 * s)), 1, -1)
  else:
    cv2.ellipse(mask, (int(m.x), int(m.y - 0.9 * s)), (max(1, int(0.3 * s)), int(0.9 * s)), 0, 0, 360, 1, -1)
    cv2.circle(mask, (int(m.x), int(m.y - 2.0 * s)), max(1, int(0.3 * s)), 1, -1)
  return mask.astype(bool)


# ---------------------------------------------------------------------------
# Domain shift
# ---------------------------------------------------------------------------


def _smooth_walk(rng, n, lo, hi, smooth):
  """A slowly drifting curve in [lo, hi] of length n."""
  steps = rng.normal(0, 1, n + smooth)
  walk = np.convolve(np.cumsum(steps), np.ones(smooth) / smooth, mode="valid")[:n]
  walk = (walk - walk.min()) / max(walk.max() - walk.min(), 1e-6)
  return lo + (hi - lo) * walk


def shift_curves(rng, num_frames: int, max_severity: float = 1.0) -> np.ndarray:
  """Per-frame severity of each shift type, `T x len(SHIFTS)` in [0, max_severity].

  Each video uses 2-3 types whose severities drift independently.
  """
  t = num_frames
  sev = np.zeros((t, len(SHIFTS)), np.float32)
  active = rng.choice(len(SHIFTS), size=int(rng.integers(2, 4)), replace=False)
  for a in active:
    lo = rng.uniform(0.0, 0.4)
    sev[:, a] = _smooth_walk(rng, t, lo, rng.uniform(lo + 0.4, 1.0), max(2, t // 6))
  return sev * max_severity


def apply_shift(frame_HW3: np.ndarray, sev: np.ndarray, rng) -> np.ndarray:
  """Corrupts one uint8 frame with the severities `sev` (one per SHIFTS entry)."""
  x = frame_HW3.astype(np.float32)
  noise, blur, fog, dark, jpeg = sev
  if blur > 0.05:
    k = 2 * int(1 + 2.5 * blur) + 1
    x = cv2.GaussianBlur(x, (k, k), 0.4 + 1.6 * blur)
  if fog > 0.05:
    x = x * (1 - 0.65 * fog) + 0.65 * fog * np.array([200, 200, 205], np.float32)
  if dark > 0.05:
    cast = np.array([1.0, 0.85 + 0.1 * dark, 1.0 + 0.4 * dark], np.float32)
    x = x * (1 - 0.75 * dark) * cast
  if noise > 0.05:
    x = x + rng.normal(0, 45 * noise, x.shape)
  x = np.clip(x, 0, 255).astype(np.uint8)
  if jpeg > 0.05:
    q = int(60 - 55 * jpeg)
    ok, buf = cv2.imencode(".jpg", x[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    x = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
  return np.ascontiguousarray(x)


# ---------------------------------------------------------------------------
# Videos and stills
# ---------------------------------------------------------------------------


def _background_instances(lab_HW: np.ndarray) -> np.ndarray:
  """Instance ids of the static canvas: each 4-connected region of one class, from 1."""
  inst = np.zeros(lab_HW.shape, np.int32)
  nxt = 1
  for c in np.unique(lab_HW):
    n, comp = cv2.connectedComponents((lab_HW == c).astype(np.uint8), connectivity=4)
    inst[comp > 0] = comp[comp > 0] + nxt - 1
    nxt += n - 1
  return inst


def make_video(spec: VideoSpec, *, instances: bool = False):
  """Renders one video. Returns `(frames_THW3 uint8, labels_THW uint8, severities_TS)`, and
  with `instances` also `instances_THW int32`: what the generator knows of each object
  (a background region of the scene, or one moving car or person), the same id on every
  frame it appears in. Only the oracle propagator reads them; they draw no random numbers,
  so frames and labels are the same either way."""
  rng = np.random.default_rng(spec.seed)
  t, h, w = spec.num_frames, spec.height, spec.width
  pan = int(rng.uniform(0.3, 0.8) * w)
  cw = w + pan + 2
  bg_img, bg_lab, horizon = _background(rng, h, cw)
  movers = []
  for _ in range(int(rng.integers(2, 5))):
    cls = "car" if rng.uniform() < 0.6 else "person"
    y = rng.uniform(horizon + 0.15 * h, h * 0.95)
    size = (0.05 + 0.12 * (y - horizon) / (h - horizon)) * h * (1.2 if cls == "car" else 0.7)
    vx = rng.uniform(0.4, 1.5) * rng.choice([-1, 1]) * (1.0 if cls == "car" else 0.3) * w / 48
    movers.append(_Mover(cls, rng.uniform(0, cw), y, vx, size, _tint(rng, cls, 50)))
  movers.sort(key=lambda m: m.y)  # far first
  tex = _noise_texture(rng, h, cw, 1.5)
  # The shift has its own stream, so a video's scene and labels do not depend on it.
  shift_rng = np.random.default_rng([spec.seed, 1])
  sev = (shift_curves(shift_rng, t, spec.max_severity) if spec.shift
         else np.zeros((t, len(SHIFTS)), np.float32))
  direction = rng.choice([-1, 1])
  frames = np.zeros((t, h, w, 3), np.uint8)
  labels = np.zeros((t, h, w), np.uint8)
  bg_inst = _background_instances(bg_lab) if instances else None
  inst_all = np.zeros((t, h, w), np.int32)
  for i in range(t):
    img, lab = bg_img.copy(), bg_lab.copy()
    inst = bg_inst.copy() if instances else None
    for j, m in enumerate(movers):
      m.x = (m.x + m.vx) % cw
      drawn = _draw_mover(img, lab, m, tex)
      if instances:  # later (nearer) movers cover earlier ones, as in the drawing
        inst[drawn] = 1_000_000 + j
    off = int(round((pan * i / max(t - 1, 1)) if direction > 0 else pan * (1 - i / max(t - 1, 1))))
    off = int(np.clip(off + rng.integers(-1, 2), 0, pan))
    clean = np.clip(img[:, off:off + w], 0, 255).astype(np.uint8)
    frames[i] = apply_shift(clean, sev[i], shift_rng) if spec.shift else clean
    labels[i] = lab[:, off:off + w]
    if instances:
      inst_all[i] = inst[:, off:off + w]
  return (frames, labels, sev, inst_all) if instances else (frames, labels, sev)


def make_stills(seed: int, num: int, height: int = 64, width: int = 64):
  """Clean labelled source-domain images: `(images_NHW3 uint8, labels_NHW uint8)`."""
  imgs = np.zeros((num, height, width, 3), np.uint8)
  labs = np.zeros((num, height, width), np.uint8)
  for n in range(num):
    f, l, _ = make_video(VideoSpec(seed=seed * 100_003 + n, num_frames=1, height=height,
                                   width=width, shift=False))
    imgs[n], labs[n] = f[0], l[0]
  return imgs, labs


def benchmark_instances(video_id: str, *, num_frames: int, height: int, width: int,
                        shuffled: bool = False, max_severity: float = 1.0) -> np.ndarray:
  """`instances_THW` of a `benchmark_videos` video, by its id (for the oracle propagator)."""
  try:
    _, seed, v = video_id.split("_")
    s = int(seed) * 1000 + int(v)
  except ValueError as e:
    raise ValueError(f"{video_id!r} is no synthetic benchmark video id (synth_<seed>_<index>)") from e
  *_, inst = make_video(VideoSpec(seed=s, num_frames=num_frames, height=height, width=width,
                                  max_severity=max_severity), instances=True)
  if shuffled:
    inst = inst[np.random.default_rng(s).permutation(num_frames)]
  return inst


def shuffle_frames(frames, labels, seed: int):
  """The shuffled-frames variant: the same frames and labels in a seeded random order."""
  perm = np.random.default_rng(seed).permutation(len(frames))
  return frames[perm], labels[perm]


def benchmark_videos(*, seed: int, num_videos: int, num_frames: int, height: int, width: int,
                     shuffled: bool = False, max_severity: float = 1.0):
  """Yields `(video_id, frames, labels)` for a split of the benchmark."""
  for v in range(num_videos):
    s = seed * 1000 + v
    f, l, _ = make_video(VideoSpec(seed=s, num_frames=num_frames, height=height, width=width,
                                   max_severity=max_severity))
    if shuffled:
      f, l = shuffle_frames(f, l, s)
    yield f"synth_{seed}_{v:03d}", f, l
