"""L_IRA: the instance-wise relation anchored to the teacher (our variant of the paper's L_IR, issue "relations that
carry knowledge").

The paper's equation distils relation *matrices*: L_IR = ‖A^s − A^t‖. In the authors' code both A come from learned
modules, the teacher-side one trained by the student's optimiser; on the demo its rows came out uniform (entropy /
log N 0.95) and told "same class" from "other class" at AUC 0.56. Here the teacher side has no parameters:

1. Nodes: the ground-truth boxes of each image plus ``background`` random boxes that overlap no ground truth much
   (as DSIG does), so that an image with one object still has relations; images with fewer than 3 nodes are left
   out (a row needs two others to say anything).
2. r = RoIAlign of every node on each level (K x C·s²), on both sides.
3. The relation of each side, parameter-free (``relations.py``):
     ``kl``:       A_ij = softmax_{j≠i}(cos(r_i, r_j) / τ),   L = mean over rows of KL(A^t_i ‖ A^s_i)
     ``distance``: D_ij = ‖r_i − r_j‖ / mean distance,       L = mean over pairs of Huber(D^s_ij − D^t_ij)
   Both are bounded per row or pair: a row cannot collapse to one-hot the way a learned θ·φ can, and the loss
   cannot spike.
4. The student side (``student_side``): ``features`` — the student's own pooled vectors, so only a change of its
   features lowers the loss; ``adapter`` — a 1x1 conv into the teacher's channels first (f_r), which can absorb
   part of the mismatch without changing the features.

Controls (``controls.py``): with ``shuffle`` the teacher's nodes are permuted within each image before its
relation is computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou

from drkd_viz.distill.base import DistillationLoss, Features, GroundTruth, per_level_log
from drkd_viz.distill.instance_relation import PointwiseAdapter, level_stride, pool_instances
from drkd_viz.distill.pixel_relation import check_shapes
from drkd_viz.distill.relation_metrics import row_agreement, same_class_auc
from drkd_viz.distill.relations import (
    instance_distances,
    instance_relation,
    pair_mask,
    permute_within_images,
    relation_logits,
)

MIN_NODES = 3
BACKGROUND_MAX_IOU = 0.3  # a background node overlaps no ground-truth box more than this


def background_boxes(
    boxes: torch.Tensor, image_size: tuple[int, int], count: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``count`` random boxes inside an image of ``image_size`` (h, w) with IoU ≤ 0.3 to every box of ``boxes``
    where possible (the least-overlapping of 8·count candidates). Their sides are drawn from the ground-truth boxes'
    sides (16–64 px in an image without any), so background nodes are pooled at the objects' scale."""
    if count <= 0:
        return boxes.new_zeros(0, 4)
    h, w = image_size
    candidates = 8 * count
    if len(boxes):
        sides = torch.cat([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]]).clamp_min(4.0).cpu()
        pick = torch.randint(len(sides), (candidates, 2), generator=generator)
        bw, bh = sides[pick[:, 0]], sides[pick[:, 1]]
    else:
        bw, bh = (16 + 48 * torch.rand(2, candidates, generator=generator)).unbind(0)
    bw, bh = bw.clamp(max=w - 1), bh.clamp(max=h - 1)
    x1 = torch.rand(candidates, generator=generator) * (w - bw)
    y1 = torch.rand(candidates, generator=generator) * (h - bh)
    proposal = torch.stack([x1, y1, x1 + bw, y1 + bh], dim=1).to(boxes)
    if not len(boxes):
        return proposal[:count]
    overlap = box_iou(proposal, boxes).max(dim=1).values
    # the first candidates under the IoU limit, then the least overlapping: a stable order keeps the draw reproducible
    order = torch.argsort(torch.where(overlap <= BACKGROUND_MAX_IOU, torch.zeros_like(overlap), overlap), stable=True)
    return proposal[order[:count]]


def relation_nodes(
    truth: GroundTruth, background: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The nodes of the batch: (K, 5) RoIs [batch index, x1, y1, x2, y2], the (K,) image index, the (K,) labels
    (0 for background nodes) and the (K,) mask of ground-truth instances. Images with fewer than 3 nodes are
    left out."""
    rois, index, labels, is_instance = [], [], [], []
    for i, (boxes, classes, size) in enumerate(zip(truth.boxes, truth.labels, truth.image_sizes, strict=True)):
        extra = background_boxes(boxes, size, background, generator)
        nodes = torch.cat([boxes, extra])
        if len(nodes) < MIN_NODES:
            continue
        rois.append(torch.cat([nodes.new_full((len(nodes), 1), float(i)), nodes], dim=1))
        index.append(torch.full((len(nodes),), i, dtype=torch.int64, device=boxes.device))
        labels.append(torch.cat([classes, classes.new_zeros(len(extra))]))
        is_instance.append(
            torch.cat([torch.ones(len(boxes), dtype=torch.bool), torch.zeros(len(extra), dtype=torch.bool)])
        )
    if not rois:
        empty = torch.zeros(0, dtype=torch.int64)
        return torch.zeros(0, 5), empty, empty, empty.bool()
    device = rois[0].device
    return torch.cat(rois), torch.cat(index), torch.cat(labels), torch.cat(is_instance).to(device)


class AnchoredInstanceRelationLoss(DistillationLoss):
    attribute = "anchored_instance"

    def __init__(
        self,
        levels: list[str],
        student_channels: int,
        teacher_channels: int,
        roi_size: int = 3,
        temperature: float = 0.1,
        background: int = 4,
        form: str = "kl",
        student_side: str = "features",
        shuffle: bool = False,
    ):
        super().__init__()
        self.levels, self.roi_size, self.temperature = list(levels), roi_size, temperature
        self.background, self.form, self.shuffle = background, form, shuffle
        self.adapters = (
            nn.ModuleDict({lv: PointwiseAdapter(student_channels, teacher_channels, roi_size) for lv in self.levels})
            if student_side == "adapter"
            else None
        )
        self.last_diagnostics: dict[str, float] = {}

    @classmethod
    def from_settings(cls, settings: Any, student_channels: int, teacher_channels: int, keys: frozenset[str]):
        s = settings
        options = (s.ira_temperature, s.ira_background, s.ira_form, s.ira_student, s.shuffle_relations)
        return cls(s.ira_levels, student_channels, teacher_channels, s.roi_size, *options)

    def relation(self, vectors: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The side's relation matrix in the loss's form (K x K)."""
        if self.form == "distance":
            return instance_distances(vectors, index)
        return instance_relation(vectors, index, self.temperature)

    def level_loss(self, r_s: torch.Tensor, r_t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        mask = pair_mask(index)
        if self.form == "distance":
            return F.smooth_l1_loss(instance_distances(r_s, index)[mask], instance_distances(r_t, index)[mask])
        log_s = torch.log_softmax(relation_logits(r_s, index, self.temperature), dim=1)
        log_t = torch.log_softmax(relation_logits(r_t, index, self.temperature), dim=1)
        # KL(A^t ‖ A^s) per row; masked entries have A^t = 0 exactly and finite logs, so they add 0
        return (log_t.exp() * (log_t - log_s)).sum(1).mean()

    def forward(
        self,
        student: Mapping[str, torch.Tensor],
        teacher: Mapping[str, torch.Tensor],
        truth: GroundTruth,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_IRA summed over levels, and its value per level (0 for a batch without an image of 3 nodes)."""
        rois, index, labels, is_instance = relation_nodes(truth, self.background, generator)
        zero = student[self.levels[0]].sum() * 0
        self.last_diagnostics = {}
        if not len(index):
            return zero, {lv: zero.detach() for lv in self.levels}
        perm = permute_within_images(index, generator) if self.shuffle else None
        per_level = {}
        for lv in self.levels:
            check_shapes(student[lv], teacher[lv], lv, "L_IRA")
            r_s = pool_instances(student[lv], rois.to(student[lv]), level_stride(lv), self.roi_size)
            r_t = pool_instances(teacher[lv], rois.to(teacher[lv]), level_stride(lv), self.roi_size)
            if self.adapters is not None:
                r_s = self.adapters[lv](r_s)
            if perm is not None:
                r_t = r_t[perm]
            per_level[lv] = self.level_loss(r_s, r_t, index)
            if self.collect_diagnostics:
                self.last_diagnostics.update(self.measure(lv, r_s, r_t, index, labels, is_instance))
        return torch.stack(list(per_level.values())).sum(), per_level

    @torch.no_grad()
    def measure(self, lv, r_s, r_t, index, labels, is_instance) -> dict[str, float]:
        """The relation metrics of one level: class structure of each side (AUC), agreement (row L1), and how
        peaked the teacher's rows are (entropy / log(N − 1))."""
        a_t, a_s = instance_relation(r_t, index, self.temperature), instance_relation(r_s, index, self.temperature)
        out = {}
        for side, matrix in (("t", a_t), ("s", a_s)):
            value = same_class_auc(matrix, index, labels, is_instance)
            if value is not None:
                out[f"ira_auc_{side}_{lv}"] = value
        l1, _ = row_agreement(a_s, a_t, index)
        out[f"ira_row_l1_{lv}"] = float(l1.mean())
        others = pair_mask(index).sum(1).double()
        rows = others >= 2
        if bool(rows.any()):
            p = a_t[rows].double()
            entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(1)
            out[f"ira_t_entropy_{lv}"] = float((entropy / torch.log(others[rows])).mean())
        return out

    def terms(self, student: Features, teacher: Features, truth: GroundTruth):
        loss, per_level = self(student, teacher, truth)
        return {"loss_ira": loss}, {**per_level_log("ira", per_level), **self.last_diagnostics}
