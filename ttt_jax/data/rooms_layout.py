"""Procedural indoor rooms as sets of oriented boxes: walls, floor, ceiling and
furniture built from parts, in one of several styles.

A style is what differs between two "datasets" the way S3DIS and ScanNet differ:
room sizes and layouts, which furniture appears and how it is built (office desks on
thin legs against low coffee tables on thick ones), surface colours and textures.
Lighting, sensor noise, point density and missing regions are the renderer's
(`rooms_render.Look`). Everything is drawn from a numpy `Generator`.

Frame: metres, +z up, the room's floor spans [0, W] x [0, D] at z = 0.
"""
from __future__ import annotations

import dataclasses

import numpy as np

CLASSES = ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "bookshelf")
NUM_CLASSES = len(CLASSES)
IGNORE = -1          # the ceiling: rendered, never labelled (Pointcept's ignore index)
C = {name: i for i, name in enumerate(CLASSES)}
TEXTURES = ("plain", "stripes", "checker", "grain")


@dataclasses.dataclass(frozen=True)
class Boxes:
  """`B` oriented boxes (rotated about +z by `yaw_B` radians).

  Attributes:
    center_B3, half_B3: centre and half extents (metres).
    yaw_B: rotation about +z.
    label_B: class id (`IGNORE` for the ceiling).
    albedo_B3: base colour in [0, 1].
    texture_B: index into `TEXTURES`; `tex_freq_B` its spatial frequency (1/m),
      `tex_amp_B` its contrast.
  """
  center_B3: np.ndarray
  half_B3: np.ndarray
  yaw_B: np.ndarray
  label_B: np.ndarray
  albedo_B3: np.ndarray
  texture_B: np.ndarray
  tex_freq_B: np.ndarray
  tex_amp_B: np.ndarray

  def __len__(self):
    return len(self.label_B)


@dataclasses.dataclass(frozen=True)
class Style:
  """A dataset's rooms.

  Attributes:
    room_w, room_d, room_h: ranges of the room's size (metres).
    furniture: class name -> (min, max) count per room.
    wall_colours, furniture_colours: palettes (RGB in [0, 1]) drawn from, jittered.
    colour_jitter: per-object jitter of the palette colour.
    textures: probabilities of `TEXTURES` on furniture.
    desk_height, leg_width, seat_height: furniture proportions (metres).
    chairs_at_tables: chairs placed around each table.
  """
  room_w: tuple[float, float]
  room_d: tuple[float, float]
  room_h: tuple[float, float]
  furniture: dict
  wall_colours: tuple
  furniture_colours: tuple
  colour_jitter: float
  textures: tuple[float, float, float, float]
  desk_height: tuple[float, float]
  leg_width: tuple[float, float]
  seat_height: tuple[float, float]
  chairs_at_tables: tuple[int, int]


STYLES = {
    # S3DIS-like: offices and conference rooms; larger, white/grey walls, desks on thin
    # legs, many chairs, cabinets and bookshelves, few sofas and beds (a rest room's:
    # both datasets share the class set, as the paper's cross-dataset settings do).
    "office": Style(room_w=(5.0, 7.5), room_d=(4.0, 6.0), room_h=(2.9, 3.2),
                    furniture={"table": (1, 3), "cabinet": (1, 3), "bookshelf": (1, 2), "sofa": (0, 1),
                               "bed": (0, 1), "door": (1, 2)},
                    wall_colours=((0.85, 0.85, 0.83), (0.75, 0.76, 0.78), (0.88, 0.86, 0.80)),
                    furniture_colours=((0.45, 0.47, 0.50), (0.25, 0.30, 0.45), (0.60, 0.45, 0.30),
                                       (0.20, 0.20, 0.22)),
                    colour_jitter=0.05, textures=(0.7, 0.1, 0.0, 0.2),
                    desk_height=(0.72, 0.78), leg_width=(0.03, 0.05), seat_height=(0.45, 0.50),
                    chairs_at_tables=(2, 4)),
    # ScanNet-like: bedrooms and living rooms; smaller, coloured walls, beds and sofas,
    # low tables on thick legs, patterned fabrics.
    "home": Style(room_w=(3.2, 5.0), room_d=(3.0, 4.5), room_h=(2.4, 2.7),
                  furniture={"table": (1, 1), "cabinet": (1, 2), "bookshelf": (0, 1), "sofa": (0, 1),
                             "bed": (1, 1), "door": (1, 1)},
                  wall_colours=((0.80, 0.70, 0.55), (0.55, 0.70, 0.75), (0.75, 0.55, 0.55),
                                (0.90, 0.88, 0.75)),
                  furniture_colours=((0.70, 0.25, 0.20), (0.30, 0.55, 0.30), (0.80, 0.70, 0.40),
                                     (0.35, 0.25, 0.20), (0.55, 0.40, 0.65)),
                  colour_jitter=0.12, textures=(0.3, 0.3, 0.2, 0.2),
                  desk_height=(0.40, 0.55), leg_width=(0.06, 0.10), seat_height=(0.38, 0.45),
                  chairs_at_tables=(1, 2)),
}


def broad_style(rng: np.random.Generator) -> Style:
  """A random style well beyond both datasets (the stand-in teacher's training rooms):
  any room size, any furniture mix, any colours and proportions."""
  def rnd_colours(k):
    return tuple(tuple(rng.uniform(0.05, 0.95, 3)) for _ in range(k))
  w = rng.uniform(3.0, 7.5)
  return Style(room_w=(w, w), room_d=(rng.uniform(3.0, 6.0),) * 2, room_h=(rng.uniform(2.3, 3.3),) * 2,
               furniture={"table": (0, 3), "cabinet": (0, 3), "bookshelf": (0, 2), "sofa": (0, 2),
                          "bed": (0, 2), "door": (1, 2)},
               wall_colours=rnd_colours(3), furniture_colours=rnd_colours(6),
               colour_jitter=0.2, textures=tuple(rng.dirichlet(np.ones(4))),
               desk_height=(0.35, 0.85), leg_width=(0.02, 0.12), seat_height=(0.35, 0.55),
               chairs_at_tables=(0, 4))


class _Builder:
  """Collects boxes; each object is built in its own frame, then placed."""

  def __init__(self, rng: np.random.Generator, style: Style):
    self.rng, self.style = rng, style
    self.rows: list[tuple] = []

  def colour(self, palette) -> np.ndarray:
    base = np.asarray(palette[self.rng.integers(len(palette))], np.float64)
    return np.clip(base + self.rng.normal(0, self.style.colour_jitter, 3), 0.02, 0.98)

  def texture(self) -> tuple[int, float, float]:
    t = int(self.rng.choice(len(TEXTURES), p=np.asarray(self.style.textures) / np.sum(self.style.textures)))
    return t, float(self.rng.uniform(2.0, 8.0)), float(self.rng.uniform(0.1, 0.35)) if t else 0.0

  def add(self, center, half, yaw, label, albedo, tex=(0, 0.0, 0.0)):
    self.rows.append((np.asarray(center, float), np.asarray(half, float), float(yaw), int(label),
                      np.asarray(albedo, float), *tex))

  def place(self, parts, origin_xy, yaw, label, albedo, tex):
    """Adds parts given as (centre, half) in the object's frame (z from the floor)."""
    c, s = np.cos(yaw), np.sin(yaw)
    for (px, py, pz), half in parts:
      self.add((origin_xy[0] + c * px - s * py, origin_xy[1] + s * px + c * py, pz), half, yaw,
               label, albedo, tex)

  def boxes(self) -> Boxes:
    cols = list(zip(*self.rows))
    return Boxes(np.stack(cols[0]).astype(np.float32), np.stack(cols[1]).astype(np.float32),
                 np.asarray(cols[2], np.float32), np.asarray(cols[3], np.int32),
                 np.stack(cols[4]).astype(np.float32), np.asarray(cols[5], np.int32),
                 np.asarray(cols[6], np.float32), np.asarray(cols[7], np.float32))


def _legs(w, d, h, leg):
  """Four legs under a w x d top at height h."""
  return [((sx * (w / 2 - leg), sy * (d / 2 - leg), h / 2), (leg / 2, leg / 2, h / 2))
          for sx in (-1, 1) for sy in (-1, 1)]


def _parts(name: str, rng, st: Style):
  """Parts `(centre, half)` of one object in its frame (front = -y) and its footprint
  half-size (x, y)."""
  u = rng.uniform
  leg = u(*st.leg_width)
  if name == "table":
    w, d, h, t = u(0.9, 1.8), u(0.6, 0.9), u(*st.desk_height), u(0.03, 0.06)
    return [((0, 0, h - t / 2), (w / 2, d / 2, t / 2))] + _legs(w, d, h - t, leg), (w / 2, d / 2)
  if name == "chair":
    w, sh, t = u(0.40, 0.50), u(*st.seat_height), u(0.04, 0.10)
    back = u(0.35, 0.55)
    return ([((0, 0, sh - t / 2), (w / 2, w / 2, t / 2)),
             ((0, w / 2 - 0.03, sh + back / 2), (w / 2, 0.03, back / 2))]
            + _legs(w, w, sh - t, leg)), (w / 2, w / 2)
  if name == "cabinet":
    w, d, h = u(0.5, 1.2), u(0.4, 0.6), u(0.7, 1.9)
    return [((0, 0, h / 2), (w / 2, d / 2, h / 2)), ((0, -d / 2 - 0.01, h * 0.6), (0.02, 0.01, 0.06))], (w / 2, d / 2)
  if name == "bookshelf":
    w, d, h, t = u(0.7, 1.2), u(0.28, 0.4), u(1.4, 2.1), 0.03
    parts = [((sx * (w / 2 - t / 2), 0, h / 2), (t / 2, d / 2, h / 2)) for sx in (-1, 1)]
    parts.append(((0, d / 2 - t / 2, h / 2), (w / 2, t / 2, h / 2)))
    n = int(rng.integers(3, 6))
    parts += [((0, 0, z), (w / 2 - t, d / 2, t / 2)) for z in np.linspace(t / 2, h - t / 2, n)]
    return parts, (w / 2, d / 2)
  if name == "sofa":
    w, d, sh = u(1.5, 2.2), u(0.8, 0.95), u(*st.seat_height)
    arm, back = u(0.12, 0.22), u(0.35, 0.5)
    return [((0, 0, sh / 2), (w / 2, d / 2, sh / 2)),
            ((0, d / 2 - 0.1, sh + back / 2), (w / 2, 0.1, back / 2)),
            ((-w / 2 + arm / 2, 0, sh + 0.1), (arm / 2, d / 2, 0.1)),
            ((w / 2 - arm / 2, 0, sh + 0.1), (arm / 2, d / 2, 0.1))], (w / 2, d / 2)
  if name == "bed":
    w, d, base, mat = u(1.0, 1.7), u(1.9, 2.1), u(0.25, 0.35), u(0.15, 0.25)
    head = u(0.5, 0.9)
    return [((0, 0, base / 2), (w / 2, d / 2, base / 2)),
            ((0, -0.02, base + mat / 2), (w / 2 - 0.03, d / 2 - 0.05, mat / 2)),
            ((0, d / 2 - 0.03, head / 2), (w / 2, 0.03, head / 2))], (w / 2, d / 2)
  raise ValueError(f"no furniture named {name!r}")


def _fits(fp, taken, room_wd, margin=0.05):
  """Whether an axis-aligned footprint (x0, y0, x1, y1) lies in the room and clear of others."""
  x0, y0, x1, y1 = fp
  if x0 < margin or y0 < margin or x1 > room_wd[0] - margin or y1 > room_wd[1] - margin:
    return False
  return all(x1 <= a0 or x0 >= a1 or y1 <= b0 or y0 >= b1 for a0, b0, a1, b1 in taken)


def _footprint(xy, yaw, hx, hy):
  quarter = int(round(yaw / (np.pi / 2))) % 2
  ex, ey = (hy, hx) if quarter else (hx, hy)
  return (xy[0] - ex, xy[1] - ey, xy[0] + ex, xy[1] + ey)


def make_room(rng: np.random.Generator, style: Style) -> tuple[Boxes, np.ndarray]:
  """One room: `(boxes, size_3)` with size (W, D, H) in metres. Furniture stands on the
  floor at right angles to the walls; large pieces back onto a wall, tables stand
  free with chairs around them; a door is a thin panel on a wall."""
  b = _Builder(rng, style)
  W, D, H = rng.uniform(*style.room_w), rng.uniform(*style.room_d), rng.uniform(*style.room_h)
  wt = 0.1
  wall_rgb = b.colour(style.wall_colours)
  for center, half in (((-wt / 2, D / 2, H / 2), (wt / 2, D / 2 + wt, H / 2)),
                       ((W + wt / 2, D / 2, H / 2), (wt / 2, D / 2 + wt, H / 2)),
                       ((W / 2, -wt / 2, H / 2), (W / 2, wt / 2, H / 2)),
                       ((W / 2, D + wt / 2, H / 2), (W / 2, wt / 2, H / 2))):
    b.add(center, half, 0.0, C["wall"], wall_rgb)
  floor_tex = (int(rng.choice([0, 2, 3])), float(rng.uniform(1.0, 3.0)), float(rng.uniform(0.05, 0.25)))
  b.add((W / 2, D / 2, -wt / 2), (W / 2, D / 2, wt / 2), 0.0, C["floor"],
        np.clip(rng.uniform(0.25, 0.65) * np.array([1.0, 0.9, 0.75]) + rng.normal(0, 0.05, 3), 0, 1), floor_tex)
  b.add((W / 2, D / 2, H + wt / 2), (W / 2, D / 2, wt / 2), 0.0, IGNORE, np.full(3, 0.9))
  taken: list[tuple] = []
  # Doors: thin panels standing 2 cm proud of a wall, reaching from the floor.
  for _ in range(int(rng.integers(*np.add(style.furniture["door"], (0, 1))))):
    dw, dh = rng.uniform(0.8, 1.0), min(rng.uniform(2.0, 2.2), H - 0.1)
    side = int(rng.integers(4))
    along = rng.uniform(dw / 2 + 0.1, (W if side < 2 else D) - dw / 2 - 0.1)
    xy = [(along, 0.01), (along, D - 0.01), (0.01, along), (W - 0.01, along)][side]
    half = (dw / 2, 0.02, dh / 2) if side < 2 else (0.02, dw / 2, dh / 2)
    b.add((xy[0], xy[1], dh / 2), half, 0.0, C["door"], b.colour(style.furniture_colours), b.texture())
    fx, fy = (dw / 2, 0.5) if side < 2 else (0.5, dw / 2)   # keep the door's swing free
    taken.append((xy[0] - fx, xy[1] - fy, xy[0] + fx, xy[1] + fy))
  order = ["bed", "sofa", "bookshelf", "cabinet", "table"]
  for name in order:
    lo, hi = style.furniture[name]
    for _ in range(int(rng.integers(lo, hi + 1))):
      parts, (hx, hy) = _parts(name, rng, style)
      rgb, tex = b.colour(style.furniture_colours), b.texture()
      for _try in range(30):
        if name == "table":   # free-standing, any right angle
          yaw = float(rng.integers(4)) * np.pi / 2
          xy = (rng.uniform(0, W), rng.uniform(0, D))
        else:                  # backs onto a wall, facing into the room
          side = int(rng.integers(4))
          yaw = (0.0, np.pi, -np.pi / 2, np.pi / 2)[side]
          gap = 0.06
          along = rng.uniform(hx + gap, max((W if side < 2 else D) - hx - gap, hx + gap))
          xy = [(along, D - hy - gap), (along, hy + gap), (W - hy - gap, along), (hy + gap, along)][side]
        fp = _footprint(xy, yaw, hx, hy)
        if _fits(fp, taken, (W, D)):
          break
      else:
        continue
      taken.append(fp)
      b.place(parts, xy, yaw, C[name], rgb, tex)
      if name == "table":
        _chairs(b, rng, style, xy, yaw, hx, hy, taken, (W, D))
  return b.boxes(), np.array([W, D, H], np.float32)


def _chairs(b: _Builder, rng, style, table_xy, table_yaw, hx, hy, taken, room_wd):
  """Chairs around a table, facing it, their seats partly under its top."""
  n = int(rng.integers(style.chairs_at_tables[0], style.chairs_at_tables[1] + 1))
  rgb, tex = b.colour(style.furniture_colours), b.texture()
  c, s = np.cos(table_yaw), np.sin(table_yaw)
  # A chair's back is at +y of its frame: south of the table it turns by pi.
  slots = ([(sx * hx * 0.5, -hy - 0.2, np.pi) for sx in (-1, 1)]
           + [(sx * hx * 0.5, hy + 0.2, 0.0) for sx in (-1, 1)])
  for k in rng.permutation(len(slots))[:n]:
    px, py, turn = slots[k]
    xy = (table_xy[0] + c * px - s * py, table_xy[1] + s * px + c * py)
    parts, (cx, cy) = _parts("chair", rng, style)
    yaw = table_yaw + turn
    fp = _footprint(xy, yaw, cx, cy)
    if _fits(fp, [], room_wd):   # chairs may slide under their own table
      b.place(parts, xy, yaw, C["chair"], rgb, tex)
