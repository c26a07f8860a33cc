"""Instance-wise relation distillation (spec §3): L_IR and L_INS over the ground-truth instances.

1. RoIAlign every ground-truth box of the batch in ONE call per level, with a (K, 5) box tensor
   carrying batch indices (the authors pooled every image from image 0's features), in the
   detector's transformed coordinates: instance vectors r (K x C·s²).
2. A relation module R per side (non-local over the instances of one image):
       A_ij = softmax_j( w_ij · θ(r_i)·φ(r_j) )   block-diagonal: instances of different images never meet
       z_i  = W( Σ_j A_ij g(r_j) ) + r_i
   w_ij is the relation filter: ``learned`` (a pairwise gate, trained, any N), ``none`` (w = 1), or
   ``reference`` (the authors' untrained random Linear(C·s², N), redrawn every call; for ablations).
3. L_IR = distance( f_r(z^s), z^t )   (target ``features``, authors' code)
        or distance( A^s, A^t )       (target ``matrix``, the paper's equation)
   L_INS = distance( f_i(r^s), r^t )
An image without ground truth contributes exactly 0; an image with one instance has A = [1].

Switches of the distillation ladder (docs/method.md): ``teacher_relation="cosine"`` replaces R_t by a
parameter-free relation of the teacher's instances (:class:`CosineRelation`), so the target cannot drift
towards the student; ``adapter="conv"`` makes f_i and f_r 1x1 convs over the s x s grid of each pooled
instance (C_s·C_t weights instead of C_s·C_t·s⁴; the same as a 1x1 conv before RoIAlign, which is
linear); ``standardize``
standardises both sides' instance vectors per dimension before the L_INS distance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision.ops import roi_align

from drkd_viz.distill.base import DistillationLoss, Features, GroundTruth
from drkd_viz.distill.diagnostics import relation_entropy_ratio
from drkd_viz.distill.norms import grouped_distance, standardise_channels
from drkd_viz.distill.pixel_relation import check_shapes


def level_stride(level: str) -> int:
    return 2 ** int(level[1:])


def boxes_to_rois(boxes: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, 5) RoIs [batch index, x1, y1, x2, y2] for torchvision's roi_align, and the (K,) image index."""
    device = boxes[0].device if boxes else torch.device("cpu")
    index = (
        torch.cat([torch.full((len(b),), i, dtype=torch.int64, device=device) for i, b in enumerate(boxes)])
        if boxes
        else torch.zeros(0, dtype=torch.int64)
    )
    flat = torch.cat(list(boxes)) if boxes else torch.zeros(0, 4)
    return torch.cat([index[:, None].to(flat.dtype), flat], dim=1), index


def pool_instances(feature: torch.Tensor, rois: torch.Tensor, stride: int, size: int) -> torch.Tensor:
    """One RoIAlign call for every box of the batch -> (K, C·size²) instance vectors."""
    pooled = roi_align(
        feature, rois.to(feature.dtype), output_size=size, spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True
    )
    return pooled.flatten(1)


@dataclass
class RelationOutput:
    matrix: torch.Tensor  # A: K x K, zero outside each image's block, rows sum to 1
    filter: torch.Tensor  # w: K x K (1 everywhere for "none")
    aggregated: torch.Tensor | None  # z: K x dim (None for a module built without aggregation)


class RelationModule(nn.Module):
    def __init__(
        self, dim: int, filter_mode: str = "learned", scale: bool = True, gate_dim: int = 32, aggregate: bool = True
    ):
        super().__init__()
        hidden = max(dim // 2, 1)
        self.filter_mode, self.scale, self.hidden = filter_mode, scale, hidden
        self.theta, self.phi = nn.Linear(dim, hidden), nn.Linear(dim, hidden)
        # g and W only serve z; a matrix-target loss never uses z, so they are not built (nothing untrained)
        self.g = nn.Linear(dim, hidden) if aggregate else None
        self.out = nn.Linear(hidden, dim) if aggregate else None
        if filter_mode == "learned":
            # w_ij = 2·sigmoid(q(r_i)·k(r_j)/√d + b): starts at w ≈ 1 (no filtering) and learns to gate pairs
            self.gate_q, self.gate_k = nn.Linear(dim, gate_dim), nn.Linear(dim, gate_dim)
            for layer in (self.gate_q, self.gate_k):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)
            self.gate_bias = nn.Parameter(torch.zeros(()))

    def relation_filter(self, r: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        k = r.shape[0]
        if self.filter_mode == "none":
            return r.new_ones(k, k)
        if self.filter_mode == "learned":
            q, key = self.gate_q(r), self.gate_k(r)
            return 2 * torch.sigmoid(q @ key.T / math.sqrt(q.shape[1]) + self.gate_bias)
        # reference: the authors' nn.Linear(C·9, N) made inside forward — random, untrained, redrawn each call.
        # Column j of an image's Linear is drawn for instance j; batched, each column belongs to its image.
        bound = 1.0 / math.sqrt(r.shape[1])
        weight = (torch.rand(k, r.shape[1], generator=generator, device=r.device, dtype=r.dtype) * 2 - 1) * bound
        bias = (torch.rand(k, generator=generator, device=r.device, dtype=r.dtype) * 2 - 1) * bound
        return (r @ weight.T + bias).detach()

    def forward(
        self, r: torch.Tensor, image_index: torch.Tensor, generator: torch.Generator | None = None
    ) -> RelationOutput:
        logits = self.theta(r) @ self.phi(r).T
        if self.scale:
            logits = logits / math.sqrt(self.hidden)
        weights = self.relation_filter(r, generator)
        same_image = image_index[:, None] == image_index[None, :]
        matrix = torch.softmax((weights * logits).masked_fill(~same_image, float("-inf")), dim=1)
        aggregated = self.out(matrix @ self.g(r)) + r if self.g is not None else None
        return RelationOutput(matrix, weights, aggregated)


class PointwiseAdapter(nn.Module):
    """A 1x1 conv on pooled instance vectors: (K, C_in·s²) -> (K, C_out·s²), one channel map shared by the
    s x s positions (RoIAlign is linear, so this equals the conv applied to the feature before pooling)."""

    def __init__(self, in_channels: int, out_channels: int, size: int):
        super().__init__()
        self.in_channels, self.positions = in_channels, size * size
        self.conv = nn.Conv1d(in_channels, out_channels, 1)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.conv(r.view(r.shape[0], self.in_channels, self.positions)).flatten(1)


class CosineRelation(nn.Module):
    """A parameter-free relation: A_ij = softmax_j(cos(r_i, r_j) / τ) within each image, z = r + A·r.

    Nothing in it is trained, so a teacher-side relation of this kind stays anchored to the teacher's own
    features; τ = 0.1 gave rows of mean entropy / log N 0.15 (P2) and 0.37 (P3) on the demo teacher."""

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(
        self, r: torch.Tensor, image_index: torch.Tensor, generator: torch.Generator | None = None
    ) -> RelationOutput:
        unit = nn.functional.normalize(r, dim=1)
        same_image = image_index[:, None] == image_index[None, :]
        logits = (unit @ unit.T / self.temperature).masked_fill(~same_image, float("-inf"))
        matrix = torch.softmax(logits, dim=1)
        return RelationOutput(matrix, r.new_ones(r.shape[0], r.shape[0]), r + matrix @ r)


class InstanceRelationLoss(DistillationLoss):
    attribute = "instance"

    def __init__(
        self,
        levels: list[str],
        student_channels: int,
        teacher_channels: int,
        roi_size: int = 3,
        filter_mode: str = "learned",
        target: str = "features",
        norm: str = "mse",
        scale: bool = True,
        relations: bool = True,
        instances: bool = True,
        teacher_relation: str = "learned",
        adapter: str = "linear",
        standardize: bool = False,
    ):
        super().__init__()
        self.levels, self.roi_size, self.target, self.norm = list(levels), roi_size, target, norm
        self.standardize = standardize
        dim_s, dim_t = student_channels * roi_size**2, teacher_channels * roi_size**2

        def adapter_module() -> nn.Module:  # f_i / f_r: student instance vectors into the teacher's space
            if adapter == "conv":
                return PointwiseAdapter(student_channels, teacher_channels, roi_size)
            return nn.Linear(dim_s, dim_t)

        # only the modules the enabled terms use exist: no untrained weights, nothing DDP waits for in vain
        self.student_relations = self.teacher_relations = self.relation_adapters = self.instance_adapters = None
        if relations:
            aggregate = target == "features"
            self.student_relations = nn.ModuleDict(
                {lv: RelationModule(dim_s, filter_mode, scale, aggregate=aggregate) for lv in self.levels}
            )
            self.teacher_relations = nn.ModuleDict(
                {
                    lv: CosineRelation()
                    if teacher_relation == "cosine"
                    else RelationModule(dim_t, filter_mode, scale, aggregate=aggregate)
                    for lv in self.levels
                }
            )
            if aggregate:
                self.relation_adapters = nn.ModuleDict({lv: adapter_module() for lv in self.levels})  # f_r
        if instances:
            self.instance_adapters = nn.ModuleDict({lv: adapter_module() for lv in self.levels})  # f_i
        # with collect_diagnostics, forward also records how peaked each side's relation rows are (diagnostics.py)
        self.last_diagnostics: dict[str, float] = {}

    @classmethod
    def from_settings(cls, settings: Any, student_channels: int, teacher_channels: int, keys: frozenset[str]):
        s = settings
        switches = {"teacher_relation": s.teacher_relation, "adapter": s.instance_adapter, "standardize": s.standardize}
        terms = {"relations": "loss_ir" in keys, "instances": "loss_ins" in keys}
        options = (s.relation_filter, s.ir_target, s.norm, s.relation_scale)
        return cls(s.ir_levels, student_channels, teacher_channels, s.roi_size, *options, **terms, **switches)

    def forward(
        self,
        student: Mapping[str, torch.Tensor],
        teacher: Mapping[str, torch.Tensor],
        boxes: list[torch.Tensor],
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Returns (L_IR, L_INS, per-level values). ``boxes``: per image, in the transformed coordinates."""
        rois, index = boxes_to_rois(boxes)
        n_images = len(boxes)
        counts = torch.bincount(index, minlength=n_images)
        ir_terms, ins_terms, per_level = [], [], {}
        self.last_diagnostics = {}
        for lv in self.levels:
            check_shapes(student[lv], teacher[lv], lv, "L_IR")
            stride = level_stride(lv)
            r_s = pool_instances(student[lv], rois, stride, self.roi_size)
            r_t = pool_instances(teacher[lv], rois, stride, self.roi_size)
            if self.student_relations is not None:
                rel_s = self.student_relations[lv](r_s, index, generator)
                rel_t = self.teacher_relations[lv](r_t, index, generator)
                if self.collect_diagnostics:
                    for side, rel in (("t", rel_t), ("s", rel_s)):
                        ratio = relation_entropy_ratio(rel.matrix, index)
                        if ratio is not None:  # a batch without an image of two instances has no relation
                            self.last_diagnostics[f"{side}_entropy_{lv}"] = ratio
                if self.target == "features":
                    sq = (self.relation_adapters[lv](rel_s.aggregated) - rel_t.aggregated).pow(2).sum(1)
                    ir = grouped_distance(sq, index, n_images, sq.numel() * r_t.shape[1], self.norm)
                else:  # the paper's equation: the relation matrices (zero outside the blocks on both sides)
                    sq = (rel_s.matrix - rel_t.matrix).pow(2).sum(1)
                    ir = grouped_distance(sq, index, n_images, int((counts**2).sum()), self.norm)
                ir_terms.append(ir)
                per_level[f"ir_{lv}"] = ir.detach()
            if self.instance_adapters is not None:
                s_ins, t_ins = self.instance_adapters[lv](r_s), r_t
                if self.standardize and len(r_t) > 1:
                    s_ins, t_ins = standardise_channels(s_ins), standardise_channels(r_t)
                sq_ins = (s_ins - t_ins).pow(2).sum(1)
                ins = grouped_distance(sq_ins, index, n_images, sq_ins.numel() * r_t.shape[1], self.norm)
                ins_terms.append(ins)
                per_level[f"ins_{lv}"] = ins.detach()
        zero = student[self.levels[0]].sum() * 0
        return (
            torch.stack(ir_terms).sum() if ir_terms else zero,
            torch.stack(ins_terms).sum() if ins_terms else zero,
            per_level,
        )

    def terms(self, student: Features, teacher: Features, truth: GroundTruth):
        l_ir, l_ins, per_level = self(student, teacher, truth.boxes)
        logged = {k: float(v) for k, v in per_level.items()}
        return {"loss_ir": l_ir, "loss_ins": l_ins}, {**logged, **self.last_diagnostics}
