"""COCO: reader of the official layout, synthetic writer, EU-RL's single-object subset and
the detection subset (with its COCO ground-truth file val_gt.json)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from datasets import coco
from datasets._common import Staged, read_manifest
from rlcv.errors import DataError
from rlcv.metrics.coco import coco_eval

CFG = {**coco.PARAMS["config"], **coco.PARAMS["ci"]}


def _box_poly(x, y, w, h):
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def make_coco_folder(root, split="val"):
    """A hand-made COCO-format folder whose subset D is known: images 1 and 4."""
    (root / "annotations").mkdir(parents=True)
    (root / f"{split}2017").mkdir()
    images, anns = [], []
    specs = {
        1: [(10, 10, 40, 50, 0)],                      # one object, 40x50: selected
        2: [(0, 0, 40, 40, 0), (50, 20, 35, 35, 0)],   # two objects: rejected
        3: [(5, 5, 31, 60, 0)],                        # 31 px wide: rejected
        4: [(20, 10, 32, 32, 0), (60, 60, 20, 20, 1)],  # one object + a crowd region: selected
        5: [],                                         # no object: rejected
        6: [(0, 0, 20, 20, 1)],                        # only a crowd region: rejected
    }
    for img_id, objs in specs.items():
        name = f"{img_id:012d}.jpg"
        pixels = np.full((90, 100, 3), 40 * img_id, np.uint8)
        Image.fromarray(pixels).save(root / f"{split}2017" / name)
        images.append({"id": img_id, "file_name": name, "width": 100, "height": 90})
        for x, y, w, h, crowd in objs:
            seg = _box_poly(x, y, w, h)
            if crowd:
                m = np.zeros((90, 100), np.uint8, order="F")
                m[y:y + h, x:x + w] = 1
                from pycocotools import mask as mu
                rle = mu.encode(m)
                seg = {"size": [90, 100], "counts": rle["counts"].decode()}
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": 1,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": crowd,
                         "segmentation": seg})
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}
    (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(doc))
    return root


def make_two_split_folder(tmp_path):
    """The hand-made folder with identical train2017 and val2017 splits."""
    root = make_coco_folder(tmp_path / "coco")
    make_coco_folder(tmp_path / "coco2", "train")
    for sub in ("annotations", "train2017"):
        for f in (tmp_path / "coco2" / sub).iterdir():
            (root / sub).mkdir(exist_ok=True)
            f.rename(root / sub / f.name)
    return root


def test_single_object_subset_on_coco_format_folder(tmp_path):
    root = make_two_split_folder(tmp_path)
    cfg = {"image_size": 64, "min_object": 32}
    manifests = coco.stage(root, tmp_path / "staged", cfg)
    m = read_manifest(tmp_path / "staged" / "single")
    assert m == manifests["single"]
    # subset D = images 1 and 4 of both source splits, pooled and split 9334 : 4694
    assert sorted(x["file"] for x in m["images"]) == [
        "train2017/000000000001.jpg", "train2017/000000000004.jpg",
        "val2017/000000000001.jpg", "val2017/000000000004.jpg"]
    assert m["counts"] == {"train": 3, "val": 1}
    val = Staged(tmp_path / "staged" / "single").load("val")
    scale = 64 / 100
    want = {1: torch.tensor([10, 10, 50, 60.0]), 4: torch.tensor([20, 10, 52, 42.0])}
    (image_id,) = val["image_id"].tolist()
    torch.testing.assert_close(val["box"][0], want[image_id] * scale)
    area = {1: 40 * 50, 4: 32 * 32}[image_id]
    assert val["mask"][0].sum().item() == pytest.approx(area * scale**2, rel=0.08)


@pytest.mark.parametrize(("n", "train", "val"), [(14028, 9334, 4694), (20000, 9334, 4694),
                                                 (300, 200, 100), (520, 346, 174)])
def test_subset_d_split_follows_the_papers_sizes_and_proportions(n, train, val):
    keys = [("train" if i % 3 else "val", i) for i in range(n)]
    split = coco.subset_d_split(keys, seed=0)
    got = list(split.values())
    assert (got.count("train"), got.count("val")) == (train, val)
    assert set(split) <= set(keys)
    assert split == coco.subset_d_split(list(reversed(keys)), seed=0)   # order-free
    assert split != coco.subset_d_split(keys, seed=1)


def test_detection_subset_on_coco_format_folder(tmp_path):
    root = make_two_split_folder(tmp_path)
    manifests = coco.stage(root, tmp_path / "staged", {"image_size": 64, "min_object": 32})
    m = read_manifest(tmp_path / "staged" / "detection")
    assert m == manifests["detection"] and m["counts"] == {"train": 4, "val": 4}
    assert [x["file"] for x in m["images"] if x["split"] == "val"] == [
        f"val2017/{i:012d}.jpg" for i in (1, 2, 3, 4)]   # 5: no object, 6: only a crowd
    val = Staged(tmp_path / "staged" / "detection").load("val")
    assert val["image"].shape == (4, 3, 64, 64) and val["image"].dtype == torch.uint8
    assert val["image_id"].tolist() == [1, 2, 3, 4]
    scale = 64 / 100
    boxes, labels, crowd, areas = (val[k][3] for k in ("boxes", "labels", "iscrowd", "areas"))
    torch.testing.assert_close(boxes, torch.tensor([[20, 10, 52, 42], [60, 60, 80, 80.0]]) * scale)
    assert boxes.dtype == torch.float32 and labels.dtype == torch.int64
    assert labels.tolist() == [1, 1] and crowd.tolist() == [0, 1] and crowd.dtype == torch.uint8
    torch.testing.assert_close(areas, torch.tensor([32 * 32, 20 * 20.0]) * scale**2)
    assert [len(b) for b in val["boxes"]] == [1, 2, 1, 2]
    assert all(not c.any() for c in val["iscrowd"][:3])
    # the staged image is the single subset's image: one decode serves both
    single = read_manifest(tmp_path / "staged" / "single")
    split = {x["file"]: x["split"] for x in single["images"]}["val2017/000000000004.jpg"]
    d = Staged(tmp_path / "staged" / "single").load(split)
    assert any(torch.equal(img, val["image"][3]) for img in d["image"])


def test_val_gt_loads_in_pycocotools_and_matches_the_shards(tmp_path):
    root = make_two_split_folder(tmp_path)
    coco.stage(root, tmp_path / "staged", {"image_size": 64, "min_object": 32})
    folder = tmp_path / "staged" / "detection"
    assert read_manifest(folder)["val_gt"] == "val_gt.json"
    gt = COCO(str(folder / "val_gt.json"))
    val = Staged(folder).load("val")
    assert sorted(gt.getImgIds()) == val["image_id"].tolist()
    assert all(im["width"] == im["height"] == 64 for im in gt.imgs.values())
    assert gt.getCatIds() == [1] and min(gt.anns) >= 1   # COCOeval needs ids > 0
    for i, image_id in enumerate(val["image_id"].tolist()):
        anns = gt.loadAnns(gt.getAnnIds(imgIds=image_id))
        xywh = torch.tensor([a["bbox"] for a in anns])
        torch.testing.assert_close(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
                                   val["boxes"][i])
        assert [a["iscrowd"] for a in anns] == val["iscrowd"][i].tolist()
        assert [a["category_id"] for a in anns] == val["labels"][i].tolist()
        np.testing.assert_allclose([a["area"] for a in anns], val["areas"][i], rtol=1e-6)
    # every box detected: AP 1, the detection on the crowd region is ignored rather than
    # a false positive; a missed object costs AP
    gt_doc = json.loads((folder / "val_gt.json").read_text())
    dt = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
           "score": 1.0} for a in gt_doc["annotations"]]
    assert any(a["iscrowd"] for a in gt_doc["annotations"])
    assert coco_eval(gt_doc, dt)["AP"] == pytest.approx(1.0)
    assert coco_eval(gt_doc, dt[1:])["AP"] < 0.9


def test_stage_decodes_each_image_once(tmp_path, monkeypatch):
    root = make_two_split_folder(tmp_path)
    calls = []
    real = coco.read_image
    monkeypatch.setattr(coco, "read_image", lambda path, *a: calls.append(path) or real(path, *a))
    manifests = coco.stage(root, tmp_path / "staged", {"image_size": 64, "min_object": 32})
    assert len(calls) == len(set(calls)) == sum(manifests["detection"]["counts"].values()) == 8


def _max_pair_iou(anns) -> float:
    from pycocotools import mask as mu

    boxes = [a["bbox"] for a in anns]
    iou = mu.iou(boxes, boxes, [0] * len(boxes))
    np.fill_diagonal(iou, 0)
    return float(iou.max())


def test_synthetic_crowded_scenes_defeat_nms_and_carry_crowd_rle(tmp_path):
    cfg = {**CFG, "n_train": 30, "n_val": 10, "frac_single": 0, "frac_small": 0,
           "frac_crowded": 0.8, "frac_with_crowd": 0.2}
    coco.synth(tmp_path / "raw", cfg, 0)
    ref = COCO(str(tmp_path / "raw" / "annotations" / "instances_train2017.json"))
    objects = [ref.loadAnns(ref.getAnnIds(imgIds=i, iscrowd=False)) for i in ref.getImgIds()]
    multi = [a for a in objects if len(a) >= 2]
    assert max(len(a) for a in objects) <= 10 and len(multi) >= 15
    # true boxes overlapping above greedy NMS's IoU 0.5 in a good share of the scenes
    assert np.mean([_max_pair_iou(a) > 0.5 for a in multi]) > 0.25
    crowd = ref.loadAnns(ref.getAnnIds(iscrowd=True))
    assert crowd and all(isinstance(a["segmentation"], dict) for a in crowd)   # RLE
    coco.stage(tmp_path / "raw", tmp_path / "staged", cfg)
    train = Staged(tmp_path / "staged" / "detection").load("train")
    staged_crowd = sum(int(c.sum()) for c in train["iscrowd"])
    assert staged_crowd == len(crowd)
    n_boxes = sum(len(b) for b in train["boxes"])
    assert n_boxes == len(ref.getAnnIds())


def test_draw_handles_both_sample_kinds(tmp_path):
    root = make_two_split_folder(tmp_path)
    coco.stage(root, tmp_path / "staged", {"image_size": 64, "min_object": 32})
    for subset in coco.SUBSETS:
        data = Staged(tmp_path / "staged" / subset).load("val")
        sheet = coco.draw({k: v[-1] for k, v in data.items()})
        assert sheet.shape == (64, 64, 3) and sheet.dtype == np.uint8
        assert not np.array_equal(sheet, data["image"][-1].permute(1, 2, 0).numpy())


def test_person_keypoints_file_is_accepted(tmp_path):
    root = make_coco_folder(tmp_path / "coco")
    ann = root / "annotations"
    (ann / "instances_val2017.json").rename(ann / "person_keypoints_val2017.json")
    reader = coco.CocoReader(root, "val")
    assert coco.select_single(reader, 32) == [1, 4]


def test_synthetic_round_trip_through_pycocotools_and_torchvision(tmp_path):
    from torchvision.datasets import CocoDetection

    coco.synth(tmp_path / "raw", CFG, 0)
    ann_file = tmp_path / "raw" / "annotations" / "instances_train2017.json"
    ref = COCO(str(ann_file))
    ours = coco.CocoReader(tmp_path / "raw", "train")
    assert ours.image_ids() == sorted(ref.getImgIds())
    assert len(ref.getCatIds()) >= 5
    kinds = {len(ref.getAnnIds(imgIds=i, iscrowd=False)) for i in ref.getImgIds()}
    assert 1 in kinds and max(kinds) >= 2
    tv = CocoDetection(str(tmp_path / "raw" / "train2017"), str(ann_file))
    img, target = tv[0]
    assert img.size == (ours.info(tv.ids[0])["width"], ours.info(tv.ids[0])["height"])
    for ann in target:
        np.testing.assert_array_equal(ours.mask(ann), ref.annToMask(ann).astype(bool))
    centres = []
    for i in ref.getImgIds():
        for a in ref.loadAnns(ref.getAnnIds(imgIds=i, iscrowd=False)):
            info = ref.imgs[i]
            centres.append((a["bbox"][0] + a["bbox"][2] / 2) / info["width"])
    assert np.std(centres) > 0.12   # objects are spread, not centred


def test_synthetic_is_deterministic(tmp_path):
    coco.synth(tmp_path / "a", CFG, 3)
    coco.synth(tmp_path / "b", CFG, 3)
    for f in sorted((tmp_path / "a").rglob("*")):
        if f.is_file():
            assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()


@pytest.mark.parametrize("damage, match", [
    ("no_root", "folder missing"),
    ("bad_json", "malformed JSON"),
    ("no_images_key", "no list 'images'"),
    ("missing_image", "missing"),
    ("truncated_image", "damaged"),
])
def test_bad_input_one_line_error_nothing_written(tmp_path, damage, match):
    root = make_coco_folder(tmp_path / "coco")
    ann = root / "annotations" / "instances_val2017.json"
    if damage == "no_root":
        root = tmp_path / "nowhere"
    elif damage == "bad_json":
        ann.write_text(ann.read_text()[:-20])
    elif damage == "no_images_key":
        doc = json.loads(ann.read_text())
        del doc["images"]
        ann.write_text(json.dumps(doc))
    elif damage == "missing_image":
        (root / "val2017" / "000000000004.jpg").unlink()
    elif damage == "truncated_image":
        f = root / "val2017" / "000000000004.jpg"
        f.write_bytes(f.read_bytes()[:200])
    out = tmp_path / "staged"
    with pytest.raises(DataError, match=match) as exc:
        coco.stage(root, out, {"image_size": 32, "min_object": 32})
    assert "\n" not in str(exc.value)
    assert not out.exists() or not any(out.iterdir())


def test_cli_bad_root_exits_nonzero_with_one_line(tmp_path, repo):
    proc = subprocess.run([sys.executable, "-m", "rlcv.cli", "stage", "coco", "--root",
                           str(tmp_path / "nope"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=repo)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "folder missing" in proc.stderr
    assert not (tmp_path / "out").exists()
