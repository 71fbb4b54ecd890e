"""MPII Human Pose (Andriluka et al., CVPR 2014), multi-person groups for EU-RL.

EU-RL (Xie et al. 2018, Sec. 4.2) refines the person boxes of an RMPE-style two-stage
pipeline on MPII's multi-person training images and reports results on a held-out
validation split (Table 3) with head-normalised accuracy (PCKh / multi-person AP).

Official layout read here (the same reader serves the synthetic and the real data)::

    <root>/mpii_human_pose_v1_u12_1.mat     the RELEASE struct (also accepted in
                                            <root>/mpii_human_pose_v1_u12_2/, as unzipped)
    <root>/images/<name>.jpg                every image named by annolist(i).image.name

RELEASE fields used: `annolist(i).image.name`; `annolist(i).annorect(p)` with head box
`x1,y1,x2,y2`, `annopoints.point(k)` (`id` 0..15, `x`, `y`, `is_visible`), `scale`
(person height / 200 px) and `objpos.{x,y}`; `img_train(i)` (1 = training image);
`single_person{i}` (1-based indices of the sufficiently separated people). Coordinates
are MATLAB 1-based. Test images carry only `scale`/`objpos`. The common JSON conversion
(one entry per person: `image`, `center` [x,y] 1-based, `scale`, `joints` [16][x,y] with
[-1,-1] for missing ones, `joints_vis` [16]) is read by `read_json`.

Staged subset `multi`: every training image with a multi-person group (at least one
annotated person not in `single_person`), letterboxed to `size`, split train/val with a
fixed seed. Staged coordinates are 0-based pixel centres of the letterboxed image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image, ImageDraw

from datasets._common import manifest_header, read_image, require_dir, stage_subsets, under
from datasets._common import read_json as _read_json_file
from datasets._images import chw, hwc, letterbox
from rlcv.errors import DataError

NAME = "mpii"
SUBSETS = ("multi",)
MAT_NAME = "mpii_human_pose_v1_u12_1.mat"
LAYOUT = (
    "MPII Human Pose: <root>/mpii_human_pose_v1_u12_1.mat (MATLAB struct RELEASE with "
    "annolist(i).image.name, annolist(i).annorect(p).{x1,y1,x2,y2,annopoints.point(k).{id,x,y,"
    "is_visible},scale,objpos.{x,y}}, img_train, single_person; 1-based pixel coordinates) and "
    "<root>/images/<annolist(i).image.name> (JPEG); the unzipped folder "
    "mpii_human_pose_v1_u12_2/ holding the .mat is accepted too"
)
EXPECT_MAT = f"the MPII RELEASE struct in {MAT_NAME}"
EXPECT_IMAGE = "an MPII image <root>/images/<annolist(i).image.name>"
EXPECT_JSON = (
    "the MPII JSON conversion: a list of {image, center [x,y], scale, joints [16][x,y], "
    "joints_vis [16]}"
)

# The 16 MPII joints in MPII order and the limbs drawn between them.
JOINTS = tuple(
    "r_ankle r_knee r_hip l_hip l_knee l_ankle pelvis thorax upper_neck head_top "
    "r_wrist r_elbow r_shoulder l_shoulder l_elbow l_wrist".split()
)
# fmt: off
SKELETON = ((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
            (10, 11), (11, 12), (12, 7), (7, 13), (13, 14), (14, 15))
# fmt: on
PCKH_FACTOR = 0.6  # MPII's head size: 0.6 x the diagonal of the head box

PARAMS = {
    "config": {
        "seed": 0,
        "split_seed": 0,
        "val_fraction": 0.1,  # held-out validation share of the multi-person training images
        "people": [1, 4],  # synthetic people per image (min, max)
        "test_fraction": 0.15,  # synthetic images written as MPII test images (no joints)
        "jpeg_quality": 90,
        "shard_size": 256,
    },
    "ci": {"num_images": 10, "image_hw": [72, 96], "size": 64, "max_people": 4},
    "smoke": {"num_images": 300, "image_hw": [120, 160], "size": 128, "max_people": 4},
    "paper": {"root": "mpii", "size": 512, "max_people": 20},
}


# ----------------------------------------------------------------------------- readers


def find_mat(root: str | Path) -> Path:
    """The official annotation file under `root` (or its unzipped sub-folder)."""
    root = require_dir(root, LAYOUT)
    for path in (root / MAT_NAME, root / "mpii_human_pose_v1_u12_2" / MAT_NAME):
        if path.is_file():
            return path
    raise DataError(root / MAT_NAME, "missing", LAYOUT)


def _items(value) -> list:
    """A MATLAB struct array after squeeze_me: ndarray, single struct, or empty -> list."""
    if isinstance(value, np.ndarray):
        return list(value.ravel()) if value.size else []
    return [value]


def _num(value) -> float | None:
    """A squeezed numeric (or numeric-string) MATLAB field; None when empty."""
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        value = value.ravel()[0]
    if isinstance(value, bytes | str):
        value = value.strip() if isinstance(value, str) else value.decode().strip()
        if not value:
            return None
    return float(value)


def _field(obj, name: str, default=None):
    return getattr(obj, name) if name in getattr(obj, "_fieldnames", ()) else default


def _person(rect) -> dict:
    joints = np.full((16, 2), -1.0)
    vis = np.zeros(16, np.uint8)
    occl = np.zeros(16, np.uint8)
    box = [_num(_field(rect, k, np.zeros(0))) for k in ("x1", "y1", "x2", "y2")]
    head = None if any(v is None for v in box) else np.array(box, float)
    points = _field(rect, "annopoints", np.zeros(0))  # [] for a person without joints
    pts = [] if isinstance(points, np.ndarray) else _items(_field(points, "point", np.zeros(0)))
    for pt in pts:
        j = int(_num(pt.id))
        if not 0 <= j < 16:
            raise ValueError(f"joint id {j} outside 0..15")
        joints[j] = (_num(pt.x), _num(pt.y))
        vis[j] = 1
        flag = _num(_field(pt, "is_visible", np.zeros(0)))
        occl[j] = 1 if flag is None else int(flag != 0)  # empty flag: treated as visible
    pos = _field(rect, "objpos", np.zeros(0))
    objpos = None
    if not isinstance(pos, np.ndarray):
        x, y = _num(_field(pos, "x", np.zeros(0))), _num(_field(pos, "y", np.zeros(0)))
        objpos = None if x is None or y is None else np.array([x, y], float)
    return {
        "head": head,
        "joints": joints,
        "joints_vis": vis,
        "is_visible": occl,
        "scale": _num(_field(rect, "scale", np.zeros(0))),
        "objpos": objpos,
    }


def read_mat(path: str | Path) -> list[dict]:
    """Read the RELEASE struct: one record per image, coordinates as stored (1-based).

    Record: {"name", "train": bool, "single": [0-based person indices], "people": [
    {"head": [x1,y1,x2,y2] or None, "joints": float [16,2] (-1 where missing),
    "joints_vis": uint8 [16] (1 = annotated), "is_visible": uint8 [16],
    "scale": float or None, "objpos": [x,y] or None}]}.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "missing", LAYOUT)
    try:
        mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError, ...
        raise DataError(
            path, f"not a readable MAT file ({exc.__class__.__name__})", EXPECT_MAT
        ) from None
    if "RELEASE" not in mat:
        raise DataError(path, "no RELEASE struct", EXPECT_MAT)
    rel = mat["RELEASE"]
    try:
        annolist = _items(rel.annolist)
        train = np.atleast_1d(np.asarray(rel.img_train, float)).ravel()
        single = _items(_field(rel, "single_person", np.zeros(0)))
        if len(train) != len(annolist):
            raise ValueError(f"img_train has {len(train)} entries for {len(annolist)} images")
        out = []
        for i, entry in enumerate(annolist):
            people = [_person(r) for r in _items(_field(entry, "annorect", np.zeros(0)))]
            sp = single[i] if i < len(single) else np.zeros(0)
            sp = [int(v) - 1 for v in np.atleast_1d(np.asarray(sp, float)).ravel()]
            out.append(
                {
                    "name": str(entry.image.name),
                    "train": bool(train[i] == 1),
                    "single": sp,
                    "people": people,
                }
            )
    except (AttributeError, TypeError, ValueError, IndexError) as exc:
        raise DataError(path, f"malformed RELEASE struct ({exc})", EXPECT_MAT) from None
    return out


def read_json(path: str | Path) -> list[dict]:
    """Read the common JSON conversion: one dict per person, arrays as numpy (1-based)."""
    path = Path(path)
    data = _read_json_file(path, EXPECT_JSON)
    if not isinstance(data, list):
        raise DataError(path, "top level is not a list", EXPECT_JSON)
    out = []
    for k, person in enumerate(data):
        try:
            joints = np.asarray(person["joints"], float)
            vis = np.asarray(person["joints_vis"], float).astype(np.uint8)
            center = np.asarray(person["center"], float)
            if joints.shape != (16, 2) or vis.shape != (16,) or center.shape != (2,):
                raise ValueError("wrong shape")
            out.append(
                {
                    "image": str(person["image"]),
                    "center": center,
                    "scale": float(person["scale"]),
                    "joints": joints,
                    "joints_vis": vis,
                }
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                path, f"entry {k} malformed ({exc.__class__.__name__}: {exc})", EXPECT_JSON
            ) from None
    return out


def read_mpii_image(path: str | Path) -> np.ndarray:
    """Decode one MPII image to HxWx3 uint8 (DataError when missing or damaged)."""
    return read_image(path, EXPECT_IMAGE)


# ----------------------------------------------------------------------------- staging


def annotated(person: dict) -> bool:
    """True for a person with a head box and at least one annotated joint."""
    return person["head"] is not None and bool(person["joints_vis"].any())


def multi_person_images(records: list[dict]) -> list[int]:
    """Training images holding a multi-person group: an annotated person not in single_person."""
    return [
        i
        for i, r in enumerate(records)
        if r["train"]
        and any(annotated(p) and k not in r["single"] for k, p in enumerate(r["people"]))
    ]


def split_val(n: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the held-out validation items among `n` (fixed seed)."""
    n_val = int(round(n * fraction))
    if n >= 2 and fraction > 0:
        n_val = min(max(n_val, 1), n - 1)
    mask = np.zeros(n, bool)
    mask[np.random.default_rng(seed).permutation(n)[:n_val]] = True
    return mask


def _to_staged(xy: np.ndarray, t: np.ndarray) -> np.ndarray:
    """1-based MATLAB coordinates (..., 2) -> 0-based letterboxed pixel coordinates."""
    return (xy - 1.0 + 0.5) * t[:2] - 0.5 + t[2:]


def stage_sample(
    image: np.ndarray, people: list[dict], single: list[bool], size: int, max_people: int
) -> dict:
    """One staged sample: the letterboxed image and its people padded to `max_people`."""
    img, t = letterbox(image, size, centre=True)
    m = max_people
    joints = np.full((m, 16, 2), -1.0, np.float32)
    vis = np.zeros((m, 16), np.uint8)
    occl = np.zeros((m, 16), np.uint8)
    heads = np.zeros((m, 4), np.float32)
    center = np.zeros((m, 2), np.float32)
    scale = np.zeros(m, np.float32)
    for k, p in enumerate(people[:m]):
        v = p["joints_vis"].astype(bool)
        joints[k][v] = _to_staged(p["joints"][v], t)
        vis[k], occl[k] = p["joints_vis"], p["is_visible"] * p["joints_vis"]
        heads[k] = _to_staged(p["head"].reshape(2, 2), t).ravel()
        lo, hi = p["joints"][v].min(0), p["joints"][v].max(0)
        pos = p["objpos"] if p["objpos"] is not None else (lo + hi) / 2  # fallback: joint box
        center[k] = _to_staged(pos, t)
        s = p["scale"] if p["scale"] is not None else 1.25 * (hi[1] - lo[1]) / 200.0
        scale[k] = s * t[1]
    n = min(len(people), m)
    diag = np.hypot(heads[:, 2] - heads[:, 0], heads[:, 3] - heads[:, 1])
    single_arr = np.zeros(m, np.uint8)
    single_arr[:n] = np.asarray(single[:n], np.uint8)
    return {
        "image": chw(img),
        "joints": torch.from_numpy(joints),
        "joints_vis": torch.from_numpy(vis),
        "is_visible": torch.from_numpy(occl),
        "head_boxes": torch.from_numpy(heads),
        "head_size": torch.from_numpy((PCKH_FACTOR * diag).astype(np.float32)),
        "center": torch.from_numpy(center),
        "scale": torch.from_numpy(scale),
        "single": torch.from_numpy(single_arr),
        "num_people": torch.tensor(n, dtype=torch.int64),
        "orig_hw": torch.tensor(image.shape[:2], dtype=torch.int64),
        "transform": torch.from_numpy(t),
    }


FIELDS = {
    "image": "uint8 [3,S,S] letterboxed RGB",
    "joints": "float32 [M,16,2] x,y in staged pixels (0-based), -1 where missing/padding",
    "joints_vis": "uint8 [M,16] 1 = joint annotated (what PCKh scores)",
    "is_visible": "uint8 [M,16] MPII is_visible flag (0 = occluded)",
    "head_boxes": "float32 [M,4] x1,y1,x2,y2 in staged pixels",
    "head_size": "float32 [M] 0.6 x head-box diagonal (PCKh normaliser)",
    "center": "float32 [M,2] objpos in staged pixels",
    "scale": "float32 [M] person height / 200 in staged pixels",
    "single": "uint8 [M] 1 = in single_person (separated), 0 = part of the group",
    "num_people": "int64 [] valid rows of the person fields (rows >= num_people are padding)",
    "orig_hw": "int64 [2] source image height, width",
    "transform": "float32 [4] sx, sy, pad_x, pad_y: staged = (orig0 + 0.5) * s - 0.5 + pad",
}


def stage(root: str | Path, out: str | Path, cfg: dict) -> dict:
    """Stage the multi-person groups of the training images, split train/val.

    Reads the .mat once and each selected image once, streaming shards to out/multi/.
    """
    root, out = Path(root), Path(out)
    mat = find_mat(root)
    images = require_dir(root / "images", LAYOUT)
    records = read_mat(mat)
    chosen = multi_person_images(records)
    if not chosen:
        raise DataError(mat, "no training image with an annotated multi-person group", LAYOUT)
    val = split_val(len(chosen), float(cfg["val_fraction"]), int(cfg["split_seed"]))
    size, max_people = int(cfg["size"]), int(cfg["max_people"])
    groups = []
    for i in chosen:
        r = records[i]
        ks = [k for k, p in enumerate(r["people"]) if annotated(p)]
        ks.sort(key=lambda k: k in r["single"])  # group members first, separated people last
        groups.append(ks)
    dropped = sum(max(0, len(ks) - max_people) for ks in groups)

    def samples():
        for i, ks, is_val in zip(chosen, groups, val, strict=True):
            r = records[i]
            image = read_mpii_image(under(images, r["name"], EXPECT_IMAGE))
            people = [r["people"][k] for k in ks]
            sample = stage_sample(image, people, [k in r["single"] for k in ks], size, max_people)
            yield "multi", ("val" if is_val else "train"), r["name"], sample

    meta = {
        **manifest_header(NAME, root, cfg),
        "subset": "multi",
        "size": size,
        "max_people": max_people,
        "people_dropped": dropped,
        "fields": FIELDS,
    }
    return stage_subsets(out, {"multi": meta}, samples(), int(cfg.get("shard_size", 256)))


def synth(root: str | Path, cfg: dict, seed: int) -> None:
    """Write a synthetic MPII in the official layout (see datasets.mpii_synth)."""
    from datasets import mpii_synth

    mpii_synth.synth(root, cfg, seed)


# ----------------------------------------------------------------------------- drawing

_COLOURS = np.array(
    [[255, 64, 64], [64, 200, 255], [255, 220, 0], [180, 90, 255], [0, 230, 120], [255, 140, 0]],
    np.uint8,
)


def draw(sample: dict) -> np.ndarray:
    """The staged image with each person's skeleton, joints and head box drawn over it."""
    img = Image.fromarray(np.ascontiguousarray(hwc(sample["image"])))
    d = ImageDraw.Draw(img)
    joints, vis = sample["joints"].numpy(), sample["joints_vis"].numpy()
    r = max(1, img.width // 96)
    for k in range(int(sample["num_people"])):
        c = tuple(int(v) for v in _COLOURS[k % len(_COLOURS)])
        for a, b in SKELETON:
            if vis[k, a] and vis[k, b]:
                d.line([tuple(joints[k, a]), tuple(joints[k, b])], fill=c, width=r)
        for x, y in joints[k][vis[k].astype(bool)]:
            d.ellipse([x - r, y - r, x + r, y + r], fill=c)
        d.rectangle(tuple(float(v) for v in sample["head_boxes"][k]), outline=c)
    return np.asarray(img)
