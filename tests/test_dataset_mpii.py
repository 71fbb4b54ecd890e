"""MPII Human Pose: the .mat / JSON readers, the synthetic writer, the multi-person stager."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
import torch

from datasets import mpii, mpii_synth
from datasets._common import load_split, read_manifest
from rlcv.errors import DataError


@pytest.fixture
def cfg():
    return {**mpii.PARAMS["config"], **mpii.PARAMS["ci"], "profile": "ci"}


@pytest.fixture
def synth_root(tmp_path, cfg):
    root = tmp_path / "mpii"
    mpii.synth(root, cfg, seed=0)
    return root


def _same_person(a: dict, b: dict) -> None:
    for key in ("head", "joints", "joints_vis", "is_visible", "scale", "objpos"):
        if a[key] is None or b[key] is None:
            assert a[key] is None and b[key] is None, key
        else:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def test_reads_the_genuine_json_and_its_images(realdata):
    folder = realdata / "mpii"
    people = mpii.read_json(folder / "test_mpii.json")
    assert len(people) == 5
    for p in people:
        image = mpii.read_mpii_image(folder / p["image"])
        h, w = image.shape[:2]
        assert (
            image.dtype == np.uint8 and image.shape[2] == 3 and (w, h) in ((1280, 720), (854, 480))
        )
        seen = p["joints_vis"].astype(bool)
        assert (p["joints"][~seen] == -1).all()  # missing joints are [-1, -1]
        xy = p["joints"][seen]
        assert ((xy >= 1) & (xy <= [w, h])).all()  # 1-based, inside the frame
        assert 0 < p["scale"] < 10 and ((p["center"] >= 1) & (p["center"] <= [w, h])).all()
    assert people[2]["joints_vis"][0] == 0 and people[0]["joints_vis"].all()


def test_synthetic_mat_round_trips_through_the_reader(synth_root, cfg):
    records = mpii.read_mat(synth_root / mpii.MAT_NAME)
    truth = list(mpii_synth.scenes(cfg, seed=0))
    assert [r["name"] for r in records] == [t["name"] for t, _ in truth]
    for rec, (t, image) in zip(records, truth, strict=True):
        assert rec["train"] == t["train"] and rec["single"] == t["single"]
        assert len(rec["people"]) == len(t["people"]) >= 1
        for a, b in zip(rec["people"], t["people"], strict=True):
            _same_person(a, b)
        decoded = mpii.read_mpii_image(synth_root / "images" / rec["name"])
        assert decoded.shape == image.shape  # JPEG: same size, lossy pixels
    assert any(r["train"] for r in records) and any(not r["train"] for r in records)
    # articulated figures that overlap: some joints are occluded by a nearer person
    vis = np.concatenate([p["joints_vis"] for r in records for p in r["people"]])
    occl = np.concatenate([p["is_visible"] for r in records for p in r["people"]])
    assert vis.sum() > 0 and (vis.astype(bool) & (occl == 0)).any()


def test_synthetic_mat_reads_with_plain_loadmat(synth_root, cfg):
    """scipy.io.loadmat's default (unsqueezed record arrays) sees the official structure."""
    rel = scipy.io.loadmat(synth_root / mpii.MAT_NAME)["RELEASE"][0, 0]
    annolist, img_train = rel["annolist"], rel["img_train"]
    truth = [t for t, _ in mpii_synth.scenes(cfg, seed=0)]
    assert annolist.shape == (1, len(truth)) and img_train.shape == (1, len(truth))
    for i, t in enumerate(truth):
        entry = annolist[0, i]
        assert entry["image"][0, 0]["name"][0] == t["name"]
        assert img_train[0, i] == (1 if t["train"] else 0)
        rects = entry["annorect"]
        for k, person in enumerate(t["people"]):
            rect = rects[0, k]
            assert rect["scale"][0, 0] == person["scale"]
            assert rect["objpos"][0, 0]["x"][0, 0] == person["objpos"][0]
            if not t["train"]:
                assert "x1" not in rects.dtype.names  # test images: scale and objpos only
                continue
            assert [rect[c][0, 0] for c in ("x1", "y1", "x2", "y2")] == list(person["head"])
            points = rect["annopoints"][0, 0]["point"]
            ids = [int(points[0, n]["id"][0, 0]) for n in range(points.shape[1])]
            assert ids == list(np.flatnonzero(person["joints_vis"]))
            for n, j in enumerate(ids):
                assert points[0, n]["x"][0, 0] == person["joints"][j, 0]
                assert points[0, n]["y"][0, 0] == person["joints"][j, 1]
                assert points[0, n]["is_visible"][0, 0] == person["is_visible"][j]
        single = rel["single_person"][i, 0]
        assert sorted(int(v) - 1 for v in single.ravel()) == t["single"]


def _record_array(rows: list[dict]) -> np.ndarray:
    names = list(rows[0])
    arr = np.empty((1, len(rows)), dtype=[(n, object) for n in names])
    for i, r in enumerate(rows):
        arr[0, i] = tuple(r[n] for n in names)
    return arr


def test_reader_copes_with_squeezed_and_empty_matlab_fields(tmp_path):
    """One image, one person, one point (all squeezed to scalars), string/empty flags."""
    empty = np.zeros((0, 0))
    point = _record_array([{"x": 10.0, "y": 20.0, "id": 9, "is_visible": "1"}])
    rect = _record_array(
        [
            {
                "x1": 1.0,
                "y1": 2.0,
                "x2": 30.0,
                "y2": 40.0,
                "annopoints": {"point": point},
                "scale": empty,
                "objpos": empty,
            }
        ]
    )
    image1 = {"image": {"name": "a.jpg"}, "annorect": rect}
    points = _record_array(
        [
            {"x": 5.0, "y": 6.0, "id": 0, "is_visible": empty},
            {"x": 7.0, "y": 8.0, "id": 15, "is_visible": 0},
        ]
    )
    rects = _record_array(
        [
            {
                "x1": 1.0,
                "y1": 1.0,
                "x2": 9.0,
                "y2": 9.0,
                "annopoints": {"point": points},
                "scale": 1.5,
                "objpos": {"x": 3.0, "y": 4.0},
            },
            {
                "x1": empty,
                "y1": empty,
                "x2": empty,
                "y2": empty,
                "annopoints": empty,
                "scale": 2.0,
                "objpos": {"x": 5.0, "y": 6.0},
            },
        ]
    )
    image2 = {"image": {"name": "b.jpg"}, "annorect": rects}
    image3 = {"image": {"name": "c.jpg"}, "annorect": empty}
    single = np.empty((3, 1), object)
    single[0, 0], single[1, 0], single[2, 0] = np.array([[1.0]]), empty, empty
    for annolist, n in ((_record_array([image1]), 1), (_record_array([image1, image2, image3]), 3)):
        path = tmp_path / f"{n}.mat"
        scipy.io.savemat(
            path,
            {
                "RELEASE": {
                    "annolist": annolist,
                    "img_train": np.ones((1, n)),
                    "single_person": single[:n],
                }
            },
        )
        records = mpii.read_mat(path)
        assert len(records) == n and records[0]["single"] == [0]
        p = records[0]["people"][0]
        assert p["joints_vis"].sum() == 1 and p["joints_vis"][9] == 1 and p["is_visible"][9] == 1
        assert list(p["joints"][9]) == [10.0, 20.0] and p["scale"] is None and p["objpos"] is None
        assert list(p["head"]) == [1.0, 2.0, 30.0, 40.0]
    a, b = records[1]["people"]
    assert a["is_visible"][0] == 1 and a["is_visible"][15] == 0  # empty flag counts as visible
    assert b["head"] is None and not b["joints_vis"].any() and b["scale"] == 2.0
    assert records[1]["single"] == [] and records[2]["people"] == []
    assert not mpii.annotated(b) and mpii.annotated(a)


def test_synthesis_is_deterministic(tmp_path, cfg):
    mpii.synth(tmp_path / "a", cfg, seed=3)
    mpii.synth(tmp_path / "b", cfg, seed=3)
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert len(files) == cfg["num_images"] + 2   # images, the .mat, rlcv's output marker
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    mpii.synth(tmp_path / "c", cfg, seed=4)
    assert (tmp_path / "c" / mpii.MAT_NAME).read_bytes() != (
        tmp_path / "a" / mpii.MAT_NAME
    ).read_bytes()


def test_bad_input_gives_one_data_error_and_no_output(tmp_path, synth_root, cfg):
    out = tmp_path / "staged"
    with pytest.raises(DataError, match="mpii_human_pose_v1_u12_1.mat"):
        mpii.stage(tmp_path / "nowhere", out, cfg)
    # a truncated image
    first = mpii.read_mat(synth_root / mpii.MAT_NAME)[
        mpii.multi_person_images(mpii.read_mat(synth_root / mpii.MAT_NAME))[0]
    ]["name"]
    jpg = synth_root / "images" / first
    data = jpg.read_bytes()
    jpg.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=f"{first}: damaged"):
        mpii.stage(synth_root, out, cfg)
    assert not out.exists()
    jpg.write_bytes(data)
    # a damaged .mat, a .mat without RELEASE, a RELEASE without annolist
    mat = synth_root / mpii.MAT_NAME
    mat.write_bytes(b"MATLAB 5.0 MAT-file" + b"\x00" * 40)
    with pytest.raises(DataError, match="not a readable MAT file"):
        mpii.stage(synth_root, out, cfg)
    scipy.io.savemat(mat, {"other": np.zeros(3)})
    with pytest.raises(DataError, match="no RELEASE struct"):
        mpii.read_mat(mat)
    scipy.io.savemat(mat, {"RELEASE": {"img_train": np.ones((1, 2))}})
    with pytest.raises(DataError, match="malformed RELEASE"):
        mpii.stage(synth_root, out, cfg)
    assert not out.exists()
    # malformed JSON conversion
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image": ')
    with pytest.raises(DataError, match="bad.json: malformed JSON"):
        mpii.read_json(bad)
    bad.write_text(
        json.dumps(
            [
                {
                    "image": "a.jpg",
                    "center": [1, 2],
                    "scale": 1.0,
                    "joints": [[0, 0]] * 15,
                    "joints_vis": [1] * 16,
                }
            ]
        )
    )
    with pytest.raises(DataError, match="entry 0 malformed"):
        mpii.read_json(bad)


def test_stage_splits_and_fields(tmp_path, synth_root, cfg):
    out = tmp_path / "staged"
    manifest = mpii.stage(synth_root, out, cfg)["multi"]
    assert read_manifest(out / "multi") == json.loads(json.dumps(manifest))
    records = mpii.read_mat(synth_root / mpii.MAT_NAME)
    chosen = mpii.multi_person_images(records)
    val = mpii.split_val(len(chosen), cfg["val_fraction"], cfg["split_seed"])
    assert manifest["counts"] == {"train": int((~val).sum()), "val": int(val.sum())}
    assert manifest["counts"]["val"] >= 1 and manifest["dataset"] == "mpii"
    by_name = {records[i]["name"]: (i, v) for i, v in zip(chosen, val, strict=True)}
    assert sorted(x["file"] for x in manifest["images"]) == sorted(by_name)
    assert all(
        x["split"] == ("val" if by_name[x["file"]][1] else "train") for x in manifest["images"]
    )

    s, m = cfg["size"], cfg["max_people"]
    data = load_split(out / "multi", "train")
    n = manifest["counts"]["train"]
    shapes = {
        "image": (n, 3, s, s),
        "joints": (n, m, 16, 2),
        "joints_vis": (n, m, 16),
        "head_boxes": (n, m, 4),
        "head_size": (n, m),
        "num_people": (n,),
    }
    for key, shape in shapes.items():
        assert tuple(data[key].shape) == shape, key
    assert data["image"].dtype == torch.uint8 and data["joints"].dtype == torch.float32
    # coordinates follow the letterbox transform of the .mat's 1-based coordinates
    files = [x["file"] for x in manifest["images"] if x["split"] == "train"]
    for row, name in enumerate(files):
        rec = records[by_name[name][0]]
        ks = [k for k, p in enumerate(rec["people"]) if mpii.annotated(p)]
        people = [rec["people"][k] for k in sorted(ks, key=lambda k: k in rec["single"])]
        assert int(data["num_people"][row]) == len(people)
        sx, sy, px, py = data["transform"][row].tolist()
        for k, p in enumerate(people):
            v = p["joints_vis"].astype(bool)
            want = (p["joints"][v] - 0.5) * [sx, sy] - 0.5 + [px, py]
            np.testing.assert_allclose(
                data["joints"][row, k].numpy()[v], want, rtol=1e-5, atol=1e-4
            )
            assert (data["joints"][row, k].numpy()[~v] == -1).all()
            hx = (p["head"][2] - p["head"][0]) * sx
            hy = (p["head"][3] - p["head"][1]) * sy
            assert float(data["head_size"][row, k]) == pytest.approx(
                0.6 * np.hypot(hx, hy), rel=1e-5
            )
        assert not data["joints_vis"][row, len(people) :].any()
    sheet = mpii.draw({k: v[0] for k, v in data.items()})
    assert sheet.shape == (s, s, 3) and sheet.dtype == np.uint8


def test_validation_split_is_fixed():
    a = mpii.split_val(3800, 0.1, seed=0)
    assert a.sum() == 380 and np.array_equal(a, mpii.split_val(3800, 0.1, seed=0))
    assert not np.array_equal(a, mpii.split_val(3800, 0.1, seed=1))
    assert mpii.split_val(5, 0.1, seed=0).sum() == 1  # a small set keeps one held-out image
