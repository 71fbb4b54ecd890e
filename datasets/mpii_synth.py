"""Synthetic MPII Human Pose in the official layout, for EU-RL's pose experiments.

Writes `<root>/mpii_human_pose_v1_u12_1.mat` (the RELEASE struct, as MATLAB would save it:
annolist / img_train / single_person / act / version) and `<root>/images/<name>.jpg`.
Each image holds 1 to 4 articulated stick-and-limb figures with the 16 MPII joints in MPII
order, of varied scale, lean and limb angles, grouped so that they overlap; later (nearer)
figures occlude earlier ones, and an occluded joint gets `is_visible = 0`. A figure faces
the camera or turns its back (which decides whether its right limbs are on the image's
left or right), and shows it as a photo does: a face and a shirt front with a central
placket when facing the camera, the back of the head (hair) when not. Without such a cue
left and right limbs would be indistinguishable, and no pose network could learn them.
Joints outside the frame are not annotated, as in MPII. A share of images is written as MPII
test images (only `scale`/`objpos` per person). Everything is deterministic from the seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from datasets import _matfile
from rlcv import io as rio

MAT_NAME = "mpii_human_pose_v1_u12_1.mat"
_EMPTY = np.zeros((0, 0))


def _limb(start: np.ndarray, angle: float, length: float) -> np.ndarray:
    """End point of a limb leaving `start` at `angle` (0 = straight down, + = image right)."""
    return start + length * np.array([np.sin(angle), np.cos(angle)])


def pose(rng: np.random.Generator, height: float) -> tuple[np.ndarray, float]:
    """A random upright pose: [16,2] joint positions relative to the pelvis, y down, and
    which way it faces (+1 towards the camera, -1 away)."""
    u = height / 8.0
    lean = rng.normal(0.0, 0.15)
    up = np.array([np.sin(lean), -np.cos(lean)])
    side = np.array([np.cos(lean), np.sin(lean)])
    face = rng.choice([-1.0, 1.0])  # +1: facing the camera, the person's right on image left
    j = np.zeros((16, 2))
    j[7] = up * 2.6 * u
    j[8] = j[7] + up * 0.45 * u
    tilt = rng.normal(0.0, 0.2)
    j[9] = j[8] + 1.1 * u * np.array([np.sin(lean + tilt), -np.cos(lean + tilt)])
    for sh, el, wr, hip, kn, an, out in ((12, 11, 10, 2, 1, 0, -face), (13, 14, 15, 3, 4, 5, face)):
        j[sh] = j[7] + out * side * 0.95 * u
        j[hip] = j[6] + out * side * 0.55 * u
        a = out * rng.uniform(0.05, 2.6) + lean
        j[el] = _limb(j[sh], a, 1.45 * u)
        j[wr] = _limb(j[el], a + rng.uniform(-1.5, 1.5), 1.3 * u)
        a = out * rng.uniform(-0.1, 0.5) + lean + rng.normal(0.0, 0.1)
        j[kn] = _limb(j[hip], a, 2.0 * u)
        j[an] = _limb(j[kn], a + rng.uniform(-0.6, 0.6), 1.9 * u)
    return j, float(face)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    low = (rng.random((4, 5, 3)) * 200 + 30).astype(np.uint8)
    img = np.asarray(Image.fromarray(low).resize((w, h), Image.BILINEAR), np.float32)
    img += rng.normal(0.0, 8.0, (h, w, 1))
    return np.clip(img, 0, 255).astype(np.uint8)


HAIR = (45, 30, 22)
"""Colour of the back of the head of a figure facing away."""


def _draw_person(draws, joints: np.ndarray, u: float, face: float, colours) -> None:
    """Draw one figure on every (draw, colours) pair: limbs, torso, joints, head. Colours
    are (shirt, pants, skin), or None for a label map where the whole figure is `fill`:
    then only the silhouette is drawn, without the front/back details."""
    w = max(2, int(round(0.4 * u)))
    pts = [tuple(p) for p in joints]
    front = face > 0
    for d, cols in zip(draws, colours, strict=True):
        label = isinstance(cols, int)
        shirt, pants, skin = (cols,) * 3 if label else cols
        d.polygon([pts[12], pts[13], pts[3], pts[2]], fill=shirt)
        for a, b, c in (
            (2, 1, pants),
            (1, 0, pants),
            (3, 4, pants),
            (4, 5, pants),
            (6, 7, shirt),
            (12, 11, shirt),
            (11, 10, skin),
            (13, 14, shirt),
            (14, 15, skin),
            (7, 8, skin),
        ):
            d.line([pts[a], pts[b]], fill=c, width=w)
        for k in range(16):
            x, y = pts[k]
            d.ellipse(
                [x - w / 2, y - w / 2, x + w / 2, y + w / 2], fill=skin if k in (10, 15) else pants
            )
        (x0, y0), (x1, y1) = joints[8], joints[9]
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, 0.55 * np.hypot(x1 - x0, y1 - y0)
        if front and not label:   # the shirt's placket, in its complementary colour
            d.line([pts[7], pts[6]], fill=tuple(255 - c for c in shirt), width=max(1, w // 2))
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=skin if front or label else HAIR)
        if front and not label:   # eyes
            e = max(1.0, 0.18 * r)
            for dx in (-0.4 * r, 0.4 * r):
                d.ellipse([cx + dx - e, cy - 0.1 * r - e, cx + dx + e, cy - 0.1 * r + e], fill=HAIR)


def scene(rng: np.random.Generator, h: int, w: int, people: tuple[int, int], train: bool):
    """One image and its people (record format of `datasets.mpii.read_mat`, 1-based)."""
    n = int(rng.integers(people[0], people[1] + 1))
    cx = rng.uniform(0.3, 0.7) * w
    figs = []
    for _ in range(n):
        height = rng.uniform(0.45, 0.9) * h
        rel, face = pose(rng, height)
        lo, hi = rel.min(0), rel.max(0)
        x = cx + rng.normal(0.0, 0.18 * w)
        y = rng.uniform(-lo[1], max(-lo[1], h - hi[1]))
        if rng.random() < 0.1:
            y += 0.3 * height  # feet out of the frame
        figs.append((rel + [x, y], height / 8.0, face))
    figs.sort(key=lambda f: f[0][:, 1].max())  # nearer (lower feet) drawn later, on top
    image = Image.fromarray(_background(rng, h, w))
    ids = Image.new("L", (w, h), 0)
    draws = [ImageDraw.Draw(image), ImageDraw.Draw(ids)]
    for k, (joints, u, face) in enumerate(figs):
        shirt, pants = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(2))
        skin = tuple(int(v) for v in np.array([224, 172, 140]) * rng.uniform(0.45, 1.05))
        _draw_person(draws, joints, u, face, [(shirt, pants, skin), k + 1])
    idmap = np.asarray(ids)
    boxes = np.array([[*f[0].min(0), *f[0].max(0)] for f in figs])
    out = []
    for k, (joints, _, _) in enumerate(figs):
        lo, hi = boxes[k, :2], boxes[k, 2:]
        person = {
            "head": None,
            "joints": np.full((16, 2), -1.0),
            "joints_vis": np.zeros(16, np.uint8),
            "is_visible": np.zeros(16, np.uint8),
            "scale": round(float(hi[1] - lo[1]) / 200.0, 4),
            "objpos": np.round((lo + hi) / 2 + 1.0, 2),
        }
        if train:
            inside = (joints >= 0).all(1) & (joints[:, 0] <= w - 1) & (joints[:, 1] <= h - 1)
            xy = np.round(joints[inside]).astype(int)
            person["joints"][inside] = np.round(joints[inside] + 1.0, 2)
            person["joints_vis"][inside] = 1
            person["is_visible"][inside] = idmap[xy[:, 1], xy[:, 0]] == k + 1
            c, side = (joints[8] + joints[9]) / 2, 1.1 * np.hypot(*(joints[9] - joints[8]))
            person["head"] = np.round(np.concatenate([c - side / 2, c + side / 2]) + 1.0, 2)
        out.append(person)
    pad = 0.05 * (boxes[:, 2:] - boxes[:, :2])
    lo, hi = boxes[:, None, :2] - pad[:, None], boxes[:, None, 2:] + pad[:, None]
    overlap = (
        (np.minimum(hi, hi.transpose(1, 0, 2)) - np.maximum(lo, lo.transpose(1, 0, 2))) > 0
    ).all(2)
    np.fill_diagonal(overlap, False)
    single = [k for k in range(n) if not overlap[k].any()]
    return np.asarray(image), out, single


def scenes(cfg: dict, seed: int) -> Iterator[tuple[dict, np.ndarray]]:
    """All synthetic images of a profile: (record, HxWx3 uint8 image), deterministic."""
    h, w = (int(v) for v in cfg["image_hw"])
    people = tuple(int(v) for v in cfg["people"])
    for i in range(int(cfg["num_images"])):
        rng = np.random.default_rng([seed, i])
        train = bool(rng.random() >= float(cfg["test_fraction"]))
        image, persons, single = scene(rng, h, w, people, train)
        yield (
            {"name": f"{i + 1:09d}.jpg", "train": train, "single": single, "people": persons},
            image,
        )


def _opt(value):
    return _EMPTY if value is None else value


def _point_array(person: dict) -> np.ndarray:
    ks = np.flatnonzero(person["joints_vis"])
    arr = np.empty((1, len(ks)), dtype=[(f, object) for f in ("x", "y", "id", "is_visible")])
    for n, k in enumerate(ks):
        arr[0, n] = (
            float(person["joints"][k, 0]),
            float(person["joints"][k, 1]),
            int(k),
            int(person["is_visible"][k]),
        )
    return arr


def _annorect(people: list[dict]):
    if not people:
        return _EMPTY
    full = any(p["head"] is not None or p["joints_vis"].any() for p in people)
    fields = (
        ("x1", "y1", "x2", "y2", "annopoints", "scale", "objpos") if full else ("scale", "objpos")
    )
    arr = np.empty((1, len(people)), dtype=[(f, object) for f in fields])
    for k, p in enumerate(people):
        pos = (
            _EMPTY
            if p["objpos"] is None
            else {"x": float(p["objpos"][0]), "y": float(p["objpos"][1])}
        )
        row = {"scale": _opt(p["scale"]), "objpos": pos}
        if full:
            head = [_EMPTY] * 4 if p["head"] is None else [float(v) for v in p["head"]]
            row.update(zip(("x1", "y1", "x2", "y2"), head, strict=True))
            row["annopoints"] = {"point": _point_array(p)} if p["joints_vis"].any() else _EMPTY
        arr[0, k] = tuple(row[f] for f in fields)
    return arr


def mat_bytes(records: list[dict]) -> bytes:
    """The RELEASE struct of `records` as MAT-file bytes (fixed header: byte-reproducible)."""
    n = len(records)
    annolist = np.empty(
        (1, n), dtype=[(f, object) for f in ("image", "annorect", "frame_sec", "vididx")]
    )
    act = np.empty((n, 1), dtype=[(f, object) for f in ("cat_name", "act_name", "act_id")])
    single = np.empty((n, 1), dtype=object)
    for i, r in enumerate(records):
        annolist[0, i] = ({"name": r["name"]}, _annorect(r["people"]), _EMPTY, _EMPTY)
        act[i, 0] = (_EMPTY, _EMPTY, -1.0)
        s = np.asarray(r["single"], float).reshape(-1, 1) + 1
        single[i, 0] = s if len(s) else _EMPTY
    release = {
        "annolist": annolist,
        "img_train": np.array([[1.0 if r["train"] else 0.0 for r in records]]),
        "version": "12",
        "single_person": single,
        "act": act,
        "video_list": np.empty((1, 0), dtype=object),
    }
    return _matfile.mat_bytes({"RELEASE": release}, "rlcv synthetic MPII writer",
                              do_compression=True, oned_as="row")


def write_mat(path: str | Path, records: list[dict]) -> None:
    """Write `records` (read_mat's format) as an official-layout .mat, atomically."""
    rio.write_bytes(path, mat_bytes(records))


def synth(root: str | Path, cfg: dict, seed: int) -> None:
    """Write the synthetic dataset under `root` (replaced atomically)."""
    with rio.atomic_dir(root) as tmp:
        (tmp / "images").mkdir()
        records = []
        for rec, image in scenes(cfg, seed):
            Image.fromarray(image).save(
                tmp / "images" / rec["name"], quality=int(cfg["jpeg_quality"])
            )
            records.append(rec)
        write_mat(tmp / MAT_NAME, records)
