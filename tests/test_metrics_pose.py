"""MPII PCKh and multi-person AP against plain-loop transcriptions of the MATLAB toolkit's
definitions (computePCK / assignGTmulti + getRPC + VOCap)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlcv.metrics import mpii_multi_person_ap, pckh
from rlcv.metrics.pose import EVALUATED, GROUPS

NAN = float("nan")


def _head(box: np.ndarray) -> float:
    return 0.6 * math.hypot(box[2] - box[0], box[3] - box[1])


def _pckh_loop(pred, gt, vis, boxes, thr):
    dists: dict[int, list[float]] = {j: [] for j in range(16)}
    for n in range(len(gt)):
        for j in range(16):
            if not vis[n, j]:
                continue
            px, py = pred[n, j]
            d = math.inf if (math.isnan(px) or math.isnan(py)) else \
                math.hypot(px - gt[n, j, 0], py - gt[n, j, 1]) / _head(boxes[n])
            dists[j].append(d)

    def frac(js):
        ds = [d for j in js for d in dists[j]]
        return sum(d <= thr for d in ds) / len(ds) if ds else NAN

    out = {name: (frac([a]) + frac([b])) / 2 for name, (a, b) in GROUPS.items()}
    out["UBody"] = frac([10, 11, 12, 13, 14, 15])
    out["Total"] = frac(EVALUATED)
    return out


def _people(rng: np.random.Generator, n: int, spread: float = 30.0):
    centre = rng.random((n, 1, 2)) * 200
    joints = centre + rng.normal(0, spread, (n, 16, 2))
    top = centre[:, 0] + rng.normal(0, 5, (n, 2))
    boxes = np.concatenate([top - 10 - rng.random((n, 2)) * 10, top + 10], 1)
    return joints, boxes


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-12


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 12), thr=st.sampled_from([0.1, 0.5, 1.0]))
def test_pckh_matches_loop(seed: int, n: int, thr: float) -> None:
    rng = np.random.default_rng(seed)
    gt, boxes = _people(rng, n)
    pred = gt + rng.normal(0, 8, gt.shape)
    pred[rng.random((n, 16)) < 0.1] = np.nan  # joints the model did not output
    vis = rng.random((n, 16)) < 0.8
    gt[~vis] = np.nan  # unannotated joints carry no coordinates
    out = pckh(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(vis),
               torch.from_numpy(boxes), thr)
    ref = _pckh_loop(pred, gt, vis, boxes, thr)
    for key, v in ref.items():
        assert _close(out[key], v), key


def test_pckh_groups_total_and_edges() -> None:
    gt = np.zeros((1, 16, 2))
    boxes = np.array([[0.0, 0.0, 30.0, 40.0]])  # head size 0.6 * 50 = 30
    vis = np.ones((1, 16), dtype=bool)
    pred = gt.copy()
    pred[0, 9] = [15.0, 0.0]  # head top at 0.5 head sizes: still correct (<=)
    pred[0, 8] = [15.1, 0.0]  # upper neck just outside
    pred[0, 6] = pred[0, 7] = [1e4, 1e4]  # pelvis, thorax way off: not evaluated
    t = lambda x: torch.from_numpy(x)  # noqa: E731
    out = pckh(t(pred), t(gt), t(vis), t(boxes))
    assert out["Head"] == 0.5  # mean of upper neck (0) and head top (1)
    assert out["Total"] == pytest.approx(13 / 14)  # pelvis and thorax left out
    assert out["Shoulder"] == 1.0 and out["UBody"] == 1.0
    none = pckh(t(pred), t(gt), t(np.zeros((1, 16), dtype=bool)), t(boxes))
    assert math.isnan(none["Total"]) and math.isnan(none["Head"])
    with pytest.raises(ValueError, match="shape"):
        pckh(torch.zeros(1, 14, 2), t(gt), t(vis), t(boxes))
    with pytest.raises(ValueError, match="bool"):
        pckh(t(pred), t(gt), t(vis).int(), t(boxes))
    with pytest.raises(ValueError, match="zero-size"):
        pckh(t(pred), t(gt), t(vis), torch.zeros(1, 4))


def _assign_loop(pj, ps, gj, gv, hb, thr):
    """assignGTmulti for one image, loop by loop (14 evaluated joints)."""
    P, G = len(pj), len(gj)
    J = list(EVALUATED)
    has_pred = [[not np.isnan(pj[p, j]).any() for j in J] for p in range(P)]
    has_gt = [[bool(gv[g, j]) for j in J] for g in range(G)]
    match = [[[False] * 14 for _ in range(G)] for _ in range(P)]
    for p in range(P):
        for g in range(G):
            for k, j in enumerate(J):
                if has_pred[p][k] and has_gt[g][k]:
                    d = math.hypot(*(pj[p, j] - gj[g, j])) / _head(hb[g])
                    match[p][g][k] = d <= thr
    n_ann = [sum(has_gt[g]) for g in range(G)]
    pck = [[sum(match[p][g]) / n_ann[g] if n_ann[g] else 0.0 for g in range(G)]
           for p in range(P)]
    for p in range(P):  # keep each prediction's best person only (first max)
        best = max(range(G), key=lambda g: (pck[p][g], -g)) if G else None
        pck[p] = [pck[p][g] if g == best else 0.0 for g in range(G)]
    pred_to_gt = {}
    for g in range(G):
        col = [pck[p][g] for p in range(P)]
        if col and max(col) > 0:
            pred_to_gt[col.index(max(col))] = g
    scores = {j: [] for j in J}
    labels = {j: [] for j in J}
    for p in range(P):
        for k, j in enumerate(J):
            if has_pred[p][k]:
                scores[j].append(ps[p, j])
                labels[j].append(match[p][pred_to_gt[p]][k] if p in pred_to_gt else False)
    n_gt = {j: sum(has_gt[g][k] for g in range(G)) for k, j in enumerate(J)}
    return scores, labels, n_gt


def _voc_ap(rec, prec):
    mrec, mpre = [0.0] + rec + [1.0], [0.0] + prec + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec))
               if mrec[i] != mrec[i - 1])


def _multi_ap_loop(images, thr):
    scores = {j: [] for j in EVALUATED}
    labels = {j: [] for j in EVALUATED}
    n_gt = dict.fromkeys(EVALUATED, 0)
    for im in images:
        s, lab, n = _assign_loop(*im, thr)
        for j in EVALUATED:
            scores[j] += s[j]
            labels[j] += lab[j]
            n_gt[j] += n[j]
    ap = {}
    for j in EVALUATED:
        order = sorted(range(len(scores[j])), key=lambda i: -scores[j][i])  # stable
        npos, prec, rec = 0, [], []
        for r, i in enumerate(order, 1):
            npos += labels[j][i]
            prec.append(npos / r)
            rec.append(npos / n_gt[j] if n_gt[j] else NAN)
        ap[j] = _voc_ap(rec, prec) if n_gt[j] else NAN
    out = {name: (ap[a] + ap[b]) / 2 for name, (a, b) in GROUPS.items()}
    vals = [v for v in ap.values() if not math.isnan(v)]
    out["Total"] = sum(vals) / len(vals) if vals else NAN
    return out


def _multi_scene(rng: np.random.Generator, images: int):
    out = []
    for _ in range(images):
        g = int(rng.integers(0, 4))
        gj, hb = _people(rng, g, spread=15.0)
        gv = rng.random((g, 16)) < 0.85
        p = int(rng.integers(0, 5))
        pj = np.concatenate([gj[rng.permutation(g)][: min(g, p)], _people(rng, p)[0]])[:p]
        pj = pj + rng.normal(0, 6, pj.shape)
        pj[rng.random((p, 16)) < 0.15] = np.nan
        ps = np.round(rng.random((p, 16)) * 4) / 4  # ties in scores
        out.append((pj, ps, gj, gv, hb))
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), images=st.integers(1, 6))
def test_multi_person_ap_matches_loop(seed: int, images: int) -> None:
    rng = np.random.default_rng(seed)
    scene = _multi_scene(rng, images)
    cols = [[torch.from_numpy(im[i]) for im in scene] for i in range(5)]
    out = mpii_multi_person_ap(*cols)
    ref = _multi_ap_loop(scene, 0.5)
    for key, v in ref.items():
        assert _close(out[key], v), key


def test_multi_person_ap_edges() -> None:
    gj = np.zeros((1, 16, 2))
    hb = np.array([[0.0, 0.0, 30.0, 40.0]])
    gv = np.ones((1, 16), dtype=bool)
    t = lambda x: torch.from_numpy(np.asarray(x))  # noqa: E731
    perfect = mpii_multi_person_ap([t(gj)], [t(np.ones((1, 16)))], [t(gj)], [t(gv)], [t(hb)])
    assert perfect["Total"] == 1.0 and perfect["Head"] == 1.0
    empty = mpii_multi_person_ap([torch.zeros(0, 16, 2)], [torch.zeros(0, 16)], [t(gj)],
                                 [t(gv)], [t(hb)])
    assert empty["Total"] == 0.0
    # a second, far-away prediction is a false positive for every joint it predicts
    far = np.concatenate([gj, gj + 1e3])
    two = mpii_multi_person_ap([t(far)], [t(np.array([[1.0] * 16, [2.0] * 16]))], [t(gj)],
                               [t(gv)], [t(hb)])
    assert two["Total"] == pytest.approx(0.5)  # ranked first, the FP halves the precision
    with pytest.raises(ValueError, match="one entry per image"):
        mpii_multi_person_ap([t(gj)], [], [t(gj)], [t(gv)], [t(hb)])
    with pytest.raises(ValueError, match="finite scores"):
        mpii_multi_person_ap([t(gj)], [t(np.full((1, 16), np.nan))], [t(gj)], [t(gv)], [t(hb)])
