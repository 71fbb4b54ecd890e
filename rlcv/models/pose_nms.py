"""Parametric pose NMS of RMPE (Fang, Xie, Tai & Lu, ICCV 2017, Section 3.3).

EU-RL keeps RMPE's pose-level NMS after the pose network (Xie et al. 2018, Sec. 4.2.3):
several detector boxes around one person give near-identical poses, and all but one are
removed. RMPE's elimination criterion compares a candidate pose P_j with the reference
pose P_i (the most confident pose left) through two similarities:

- K_sim (soft matching of joints): sum over joints n of tanh(c_i^n / σ1) · tanh(c_j^n / σ1)
  for the joints n of P_j that lie inside the box B(k_i^n) centred on the reference joint
  with 1/10 of the reference person's box size (`match_box`), 0 otherwise;
- H_sim (spatial distance): sum over joints n of exp(-||k_i^n - k_j^n||² / σ2), the
  distance here normalised by the reference box size so one setting serves every scale;

and eliminates P_j when K_sim + λ·H_sim reaches η. The most confident remaining pose
becomes the next reference, until none is left. RMPE learns (σ1, σ2, λ, η) on data; here
they are settings with values that separate duplicates from neighbours.

The similarity matrix of all poses of an image is one tensor expression; only the greedy
selection loops, over the (few) poses kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PoseNMS:
    """RMPE's pose NMS with its four parameters."""

    sigma1: float = 0.3
    """σ1 of K_sim: confidence scale inside tanh."""
    sigma2: float = 0.01
    """σ2 of H_sim: squared distance scale (distances in units of the reference box size)."""
    lam: float = 1.0
    """λ, the weight of H_sim."""
    eta: float = 8.0
    """η, the similarity at which a pose is eliminated (out of at most (1 + λ) x joints)."""
    match_box: float = 0.1
    """Side of the matching box B(k_i^n) as a fraction of the reference box's sides."""

    def similarity(self, joints: torch.Tensor, conf: torch.Tensor,
                   boxes: torch.Tensor) -> torch.Tensor:
        """(P, P) matrix K_sim + λ·H_sim of reference pose i (rows) against pose j.

        `joints` (P, J, 2) image pixels (NaN = not predicted), `conf` (P, J) joint
        confidences, `boxes` (P, 4) the boxes the poses were estimated in.
        """
        size = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6)             # (P, 2) w, h
        ok = torch.isfinite(joints).all(-1)                                # (P, J)
        k = torch.nan_to_num(joints)
        diff = k[None, :] - k[:, None]                                     # (i, j, J, 2)
        inside = (diff.abs() <= self.match_box * size[:, None, None] / 2).all(-1)
        both = ok[:, None] & ok[None, :]
        t = torch.tanh(conf.clamp(min=0) / self.sigma1)
        k_sim = (t[:, None] * t[None, :] * (inside & both)).sum(-1)
        norm = diff / size[:, None, None]
        h_sim = (torch.exp(-norm.pow(2).sum(-1) / self.sigma2) * both).sum(-1)
        return k_sim + self.lam * h_sim

    def __call__(self, joints: torch.Tensor, conf: torch.Tensor, boxes: torch.Tensor,
                 scores: torch.Tensor) -> torch.Tensor:
        """Indices of the poses kept, most confident first (`scores` (P,) pose scores)."""
        n = joints.shape[0]
        if n == 0:
            return torch.zeros(0, dtype=torch.long)
        sim = self.similarity(joints, conf, boxes)
        order = torch.sort(scores, descending=True, stable=True).indices
        alive = torch.ones(n, dtype=torch.bool)
        keep = []
        for i in order.tolist():
            if not alive[i]:
                continue
            keep.append(i)
            # the reference itself has the largest similarity and is kept explicitly
            alive &= sim[i] < self.eta
        return torch.tensor(keep, dtype=torch.long)
