"""Synthetic scene layouts shared by the ADE20K and Cityscapes writers (CiSS-Net data).

CiSS-Net (Zhou et al., CVPR 2019, sections 1 and 3.6) learns context from predicted
segmentation maps: the layout of a scene (what lies above or beside what) disambiguates
regions that look alike locally, e.g. the reflection of sky and trees in water (Fig. 1).
The synthetic scenes carry exactly that structure:

- a scene is an ordered list of `Shape`s (integer polygons drawn back to front, the way
  Cityscapes' polygon annotations are rasterised), each with a semantic *role* (mapped
  to dataset class ids by the caller) and an appearance *look*;
- look-alike roles share one look (same base colour, same texture statistics): sky and
  water, road and sidewalk (and indoor floor), so only position and neighbours tell them
  apart;
- `street()` is the perspective street layout used by both datasets: sky above
  building facades, sidewalks beside the road, cars on the road, people on sidewalks,
  poles with signs at the kerb, trees along the facades.

`rasterize` turns shapes into a shape-index map with PIL's polygon filler (the same call
cityscapesScripts' json2labelImg makes), `paint` renders an RGB image from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# look name -> (base RGB, low-frequency texture amplitude, pixel-noise amplitude)
LOOKS: dict[str, tuple[tuple[int, int, int], float, float]] = {
    "void": ((20, 20, 20), 0.00, 0.02),
    "sky": ((120, 165, 215), 0.06, 0.02),
    "pavement": ((118, 112, 118), 0.08, 0.07),
    "facade": ((170, 110, 75), 0.05, 0.04),
    "foliage": ((60, 110, 45), 0.20, 0.18),
    "grass": ((95, 150, 60), 0.10, 0.10),
    "earth": ((130, 100, 70), 0.12, 0.10),
    "rock": ((105, 100, 110), 0.15, 0.06),
    "wall": ((205, 195, 175), 0.03, 0.02),
    "ceiling": ((235, 235, 230), 0.02, 0.01),
    "wood": ((125, 80, 45), 0.06, 0.08),
    "fabric": ((170, 60, 60), 0.05, 0.03),
    "painting": ((150, 120, 60), 0.30, 0.15),
    "metal": ((90, 90, 95), 0.02, 0.03),
    "sign": ((220, 200, 30), 0.02, 0.02),
    "lamp": ((240, 160, 40), 0.02, 0.02),
    "vehicle": ((30, 40, 140), 0.04, 0.03),
    "clothes": ((200, 30, 60), 0.06, 0.05),
    "clutter": ((160, 140, 170), 0.15, 0.10),
    "ego": ((15, 15, 20), 0.02, 0.02),
}
LOOK_NAMES = tuple(sorted(LOOKS))
_LOOK_INDEX = {name: i for i, name in enumerate(LOOK_NAMES)}
_BASE = np.array([LOOKS[n][0] for n in LOOK_NAMES], np.float32)
_LOW = np.array([LOOKS[n][1] for n in LOOK_NAMES], np.float32)
_HIGH = np.array([LOOKS[n][2] for n in LOOK_NAMES], np.float32)


@dataclass
class Shape:
    """One polygon of a scene, drawn over the shapes before it."""

    role: str  # semantic role, mapped to a class id by the dataset module
    look: str  # appearance (a key of LOOKS); look-alike roles share one
    pts: np.ndarray  # (N, 2) integer polygon (x, y), inside the image
    color: tuple | None = None  # own base colour (object instances); None = the look's
    shade: float = 1.0  # brightness factor on the look's colour


def clip_polygon(pts, w: int, h: int) -> np.ndarray:
    """Clip a polygon to the image [0, w-1] x [0, h-1] (Sutherland-Hodgman), round to ints."""
    poly = [tuple(map(float, p)) for p in pts]
    for axis, bound, keep_below in ((0, 0.0, False), (0, w - 1.0, True), (1, 0.0, False),
                                    (1, h - 1.0, True)):
        if not poly:
            break
        out = []
        for i, cur in enumerate(poly):
            prev = poly[i - 1]
            cin = cur[axis] <= bound if keep_below else cur[axis] >= bound
            pin = prev[axis] <= bound if keep_below else prev[axis] >= bound
            if cin != pin:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append(tuple(prev[k] + t * (cur[k] - prev[k]) for k in (0, 1)))
            if cin:
                out.append(cur)
        poly = out
    arr = np.rint(np.array(poly, np.float64)).astype(np.int64).reshape(-1, 2)
    if len(arr):  # drop repeated vertices created by rounding
        keep = np.any(arr != np.roll(arr, 1, axis=0), axis=1)
        arr = arr[keep] if keep.any() else arr[:1]
    return arr


def make_shape(role: str, look: str, pts, w: int, h: int, **kw) -> Shape | None:
    """A clipped `Shape`, or None when nothing of it is inside the image."""
    arr = clip_polygon(pts, w, h)
    if len(arr) < 3:
        return None
    return Shape(role, look, arr, **kw)


def rasterize(shapes: list[Shape], h: int, w: int) -> np.ndarray:
    """int32 map of the topmost shape per pixel: 0 = none, i + 1 = shapes[i]."""
    im = Image.new("I", (w, h), 0)
    draw = ImageDraw.Draw(im)
    for i, s in enumerate(shapes):
        draw.polygon([(int(x), int(y)) for x, y in s.pts], fill=i + 1)
    return np.array(im, dtype=np.int32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int = 8) -> np.ndarray:
    grid = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.BILINEAR))


def paint(index: np.ndarray, shapes: list[Shape], rng: np.random.Generator) -> np.ndarray:
    """Render the RGB image (HxWx3 uint8) of a rasterised scene.

    Per image, every look's colour is jittered once, so look-alike regions (sky and its
    reflection, road and sidewalk) share colour and texture statistics exactly.
    """
    h, w = index.shape
    look_rgb = _BASE * rng.uniform(0.85, 1.15, (len(LOOK_NAMES), 3)).astype(np.float32)
    light = np.float32(rng.uniform(0.8, 1.2))
    n = len(shapes) + 1
    rgb = np.empty((n, 3), np.float32)
    look = np.empty(n, np.int64)
    rgb[0], look[0] = look_rgb[_LOOK_INDEX["void"]], _LOOK_INDEX["void"]
    for i, s in enumerate(shapes, 1):
        look[i] = _LOOK_INDEX[s.look]
        rgb[i] = (np.array(s.color, np.float32) if s.color is not None else look_rgb[look[i]])
        rgb[i] *= s.shade
    low, high = _smooth_noise(rng, h, w), rng.standard_normal((h, w), dtype=np.float32)
    pix_look = look[index]
    texture = 1.0 + _LOW[pix_look] * low + _HIGH[pix_look] * high
    # facades carry a grid of dark windows: a local cue of "building", not of position
    py, px = rng.integers(5, 9), rng.integers(4, 8)
    yy, xx = np.ogrid[:h, :w]
    windows = ((yy % py) < py // 2) & ((xx % px) < px // 2)
    texture = np.where((pix_look == _LOOK_INDEX["facade"]) & windows, texture * 0.55, texture)
    img = rgb[index] * (texture * light)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- shape primitives


def rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Axis-aligned rectangle as a polygon."""
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], np.float64)


def blob(rng: np.random.Generator, cx, cy, rx, ry, n: int = 12, rough: float = 0.25):
    """An irregular ellipse (tree canopy, bush, cloud of clutter)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1.0 + rough * rng.uniform(-1, 1, n)
    return np.stack([cx + rx * r * np.cos(t), cy + ry * r * np.sin(t)], axis=1)


def ridge(rng: np.random.Generator, x0, x1, base, top, jag, n: int = 7) -> np.ndarray:
    """A jagged mountain/treeline/bank polygon on the line y = base, peaks in [top, top+jag]."""
    xs = np.linspace(x0, x1, n)
    ys = top + jag * rng.uniform(0, 1, n)
    return np.concatenate([[(x0, base)], np.stack([xs, ys], axis=1), [(x1, base)]])


def car(cx: float, yb: float, width: float) -> np.ndarray:
    """Side/rear silhouette of a car standing on y = yb."""
    hgt = 0.62 * width
    return np.array([
        (cx - width / 2, yb), (cx + width / 2, yb), (cx + width / 2, yb - 0.55 * hgt),
        (cx + 0.32 * width, yb - 0.6 * hgt), (cx + 0.22 * width, yb - hgt),
        (cx - 0.22 * width, yb - hgt), (cx - 0.32 * width, yb - 0.6 * hgt),
        (cx - width / 2, yb - 0.55 * hgt),
    ])


def person(cx: float, yb: float, height: float) -> np.ndarray:
    """Silhouette of a standing person (legs, torso, head) on y = yb."""
    u = height / 10.0
    return np.array([
        (cx - 1.2 * u, yb), (cx - 0.2 * u, yb), (cx, yb - 4 * u), (cx + 0.2 * u, yb),
        (cx + 1.2 * u, yb), (cx + 1.3 * u, yb - 7.5 * u), (cx + 0.6 * u, yb - 8.2 * u),
        (cx + 0.7 * u, yb - 9.6 * u), (cx, yb - 10 * u), (cx - 0.7 * u, yb - 9.6 * u),
        (cx - 0.6 * u, yb - 8.2 * u), (cx - 1.3 * u, yb - 7.5 * u),
    ])


def random_color(rng: np.random.Generator, lo: int = 20, hi: int = 235) -> tuple:
    """A random RGB base colour for one object instance (car, person, bed, ...)."""
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


# ---------------------------------------------------------------- the street layout


def street(rng: np.random.Generator, h: int, w: int, ego: bool = False,
           max_cars: int = 6, max_people: int = 4) -> list[Shape]:
    """A perspective street: roles sky, building, sidewalk, road, vegetation, pole, sign,
    light, car, person (and ego, the bonnet of the recording car).

    Road and sidewalk share the look "pavement": the sidewalk is only the strip *beside*
    the road, between it and the facades; cars stand on the road, people on sidewalks.
    """
    yh = h * rng.uniform(0.38, 0.5)  # horizon
    xv = w * rng.uniform(0.4, 0.6)  # vanishing point
    half_road = w * rng.uniform(0.3, 0.5)  # road half-width at the bottom row
    walk = w * rng.uniform(0.2, 0.4)  # sidewalk width at the bottom row
    top_gap = 0.01 * w

    def at(y, frac):  # x of the line from the vanishing point through (xv + frac, h)
        return xv + frac * (y - yh) / (h - yh)

    def put(role, look, pts, **kw):
        return make_shape(role, look, pts, w, h, **kw)

    shapes: list = [put("sky", "sky", rect(0, 0, w - 1, yh + 2))]
    for side in (-1, 1):  # facades: piecewise buildings whose height recedes to the horizon
        outer = side * (half_road + walk)
        height = rng.uniform(1.25, 2.5)  # > 1: facades rise above the horizon
        xs = sorted(rng.uniform(0, 1, rng.integers(1, 4)).tolist()) + [1.0]
        prev_y = h * 1.6
        for t in xs:
            y_next = yh + (h * 1.6 - yh) * (1 - t) + 2
            y0, y1 = max(prev_y, y_next), min(prev_y, y_next)
            hh = height * rng.uniform(0.85, 1.15)
            poly = [(at(y0, outer), y0), (at(y1, outer), y1),
                    (at(y1, outer), y1 - hh * (y1 - yh)), (at(y0, outer), y0 - hh * (y0 - yh))]
            shapes.append(put("building", "facade", poly, shade=float(rng.uniform(0.75, 1.25))))
            prev_y = y_next
    for side in (-1, 1):
        inner, outer = side * half_road, side * (half_road + walk)
        poly = [(at(h, inner), h), (at(h, outer), h), (xv + side * 2.5 * top_gap, yh),
                (xv + side * top_gap, yh)]
        shapes.append(put("sidewalk", "pavement", poly))
    road = [(at(h, -half_road), h), (at(h, half_road), h), (xv + top_gap, yh),
            (xv - top_gap, yh)]
    shapes.append(put("road", "pavement", road))

    def depth():  # 0 = at the horizon, 1 = at the bottom row
        return rng.uniform(0.08, 1.0) ** 0.7

    things = []  # (ground y, shapes) drawn far to near
    for _ in range(rng.integers(0, 3)):  # trees along the facades
        side, d = rng.choice([-1, 1]), depth()
        y = yh + d * (h - yh)
        x = at(y, side * (half_road + 0.8 * walk))
        r = 0.18 * d * h + 1
        things.append((y, [put("vegetation", "foliage", rect(x - r / 6, y - 2.2 * r, x + r / 6, y)),
                           put("vegetation", "foliage", blob(rng, x, y - 2.6 * r, r, r))]))
    for _ in range(rng.integers(0, 3)):  # poles with a sign or a traffic light at the kerb
        side, d = rng.choice([-1, 1]), depth()
        y = yh + d * (h - yh)
        x = at(y, side * (half_road + 0.15 * walk))
        ph, pw = 0.55 * d * h + 2, 0.012 * d * w + 1
        top = rect(x - 2 * pw, y - ph - 2.5 * pw, x + 2 * pw, y - ph + 1.5 * pw)
        kind = ("sign", "sign") if rng.random() < 0.6 else ("light", "lamp")
        things.append((y, [put("pole", "metal", rect(x - pw / 2, y - ph, x + pw / 2, y)),
                           put(kind[0], kind[1], top)]))
    for _ in range(rng.integers(1, max_cars + 1)):  # cars on the road
        d = depth()
        y = yh + d * (h - yh)
        lo, hi = at(y, -half_road), at(y, half_road)
        width = 0.3 * (hi - lo) * rng.uniform(0.8, 1.1)
        x = rng.uniform(lo + width / 2, hi - width / 2)
        things.append((y, [put("car", "vehicle", car(x, y, width), color=random_color(rng))]))
    for _ in range(rng.integers(0, max_people + 1)):  # people on the sidewalks
        side, d = rng.choice([-1, 1]), depth()
        y = yh + d * (h - yh)
        x = at(y, side * (half_road + rng.uniform(0.2, 0.8) * walk))
        body = person(x, y, 0.45 * d * h + 3)
        things.append((y, [put("person", "clothes", body, color=random_color(rng))]))
    things.sort(key=lambda t: t[0])
    shapes += [s for _, group in things for s in group]
    if ego:  # the recording car's bonnet along the bottom edge
        eh = h * rng.uniform(0.05, 0.1)
        xs = np.linspace(0, w - 1, 9)
        ys = h - 1 - eh * (1 - ((xs - w / 2) / (0.75 * w)) ** 2)
        poly = np.concatenate([np.stack([xs, ys], 1), [(w - 1, h - 1), (0, h - 1)]])
        shapes.append(put("ego", "ego", poly))
    return [s for s in shapes if s is not None]
