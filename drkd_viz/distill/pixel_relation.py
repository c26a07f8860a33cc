"""Pixel-wise relation distillation L_PR (spec §2): a graph-reasoning unit per FPN level on each side,
a 1x1 adapter f on the student side (which also fixes a channel mismatch C_s -> C_t):

    L_PR = Σ_levels ‖ f(G_s(S_l)) − G_t(T_l) ‖

With ``standardize`` both sides' channels are standardised over N·H·W first (as PKD does), so that neither
large-magnitude channels nor the level's overall scale dominate the distance.

Two switches anchor the teacher side (``fitted_units.py``): ``teacher_units`` given (``pr_teacher_units: fitted``)
replaces the G_t that only L_PR trains by frozen units fitted on the teacher's own detection loss, and
``target="residual"`` (``pr_target: residual``) distils only what each unit adds, Δ = G(x) − x:

    L_PR = Σ_levels ‖ f(G_s(S_l) − S_l) − (G_t(T_l) − T_l) ‖

so that L_PR holds no plain imitation of T_l.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from drkd_viz.distill.base import DistillationLoss, Features, GroundTruth, per_level_log
from drkd_viz.distill.diagnostics import residual_ratio
from drkd_viz.distill.fitted_units import load_fitted_units, unit_fit
from drkd_viz.distill.glore import GraphReasoningUnit
from drkd_viz.distill.norms import feature_distance, standardise_channels
from drkd_viz.distill.relation_metrics import box_mask, node_purity
from drkd_viz.errors import UserError


def check_shapes(student: torch.Tensor, teacher: torch.Tensor, level: str, what: str) -> None:
    if student.shape[0] != teacher.shape[0] or student.shape[2:] != teacher.shape[2:]:
        raise UserError(
            f"{what} at level {level}: student feature {tuple(student.shape)} and teacher feature "
            f"{tuple(teacher.shape)} differ in batch or spatial size; teacher and student must see the same input "
            "(same min_size/max_size and the same FPN strides)"
        )


class PixelRelationLoss(DistillationLoss):
    attribute = "pixel"

    def __init__(
        self,
        levels: list[str],
        student_channels: int,
        teacher_channels: int,
        nodes: Mapping[str, int],
        normalize: bool = True,
        norm: str = "mse",
        zero_init: bool = False,
        standardize: bool = False,
        teacher_units: nn.ModuleDict | None = None,
        target: str = "relation",
    ):
        super().__init__()
        self.levels, self.norm, self.standardize, self.target = list(levels), norm, standardize, target
        self.student_units = nn.ModuleDict(
            {lv: GraphReasoningUnit(student_channels, nodes[lv], None, normalize, zero_init) for lv in self.levels}
        )
        self.fitted = teacher_units is not None  # frozen, fitted on the teacher's detection loss
        self.teacher_units = teacher_units or nn.ModuleDict(
            {lv: GraphReasoningUnit(teacher_channels, nodes[lv], None, normalize, zero_init) for lv in self.levels}
        )
        self.adapters = nn.ModuleDict({lv: nn.Conv2d(student_channels, teacher_channels, 1) for lv in self.levels})
        # with collect_diagnostics, forward also records how much each teacher-side unit changes its input
        self.last_diagnostics: dict[str, float] = {}

        self.last_projections: dict[str, torch.Tensor] = {}

    @classmethod
    def from_settings(cls, settings: Any, student_channels: int, teacher_channels: int, keys: frozenset[str]):
        fitted = None
        if settings.pr_teacher_units == "fitted":
            fitted = load_fitted_units(settings.teacher, teacher_channels, unit_fit(settings))
        return cls(
            settings.pr_levels,
            student_channels,
            teacher_channels,
            settings.nodes,
            settings.glore_normalize,
            settings.norm,
            zero_init=settings.glore_zero_init,
            standardize=settings.standardize,
            teacher_units=fitted,
            target=settings.pr_target,
        )

    def train(self, mode: bool = True) -> PixelRelationLoss:
        super().train(mode)
        if self.fitted:  # fitted units are frozen: their BatchNorm keeps its statistics
            self.teacher_units.eval()
        return self

    def forward(
        self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns L_PR and its value per level."""
        per_level, self.last_diagnostics, self.last_projections = {}, {}, {}
        for lv in self.levels:
            check_shapes(student[lv], teacher[lv], lv, "L_PR")
            t_parts = self.teacher_units[lv].parts(teacher[lv])
            if self.target == "residual":
                s = self.adapters[lv](self.student_units[lv].parts(student[lv]).residual)
                t = t_parts.residual
            else:
                s = self.adapters[lv](self.student_units[lv](student[lv]))
                t = t_parts.relation
            if self.standardize:
                s, t = standardise_channels(s), standardise_channels(t)
            per_level[lv] = feature_distance(s, t, self.norm)
            if self.collect_diagnostics:
                self.last_diagnostics[f"t_residual_{lv}"] = residual_ratio(t_parts.residual, teacher[lv])
                self.last_projections[lv] = t_parts.projection.detach()
        return torch.stack(list(per_level.values())).sum(), per_level

    def terms(self, student: Features, teacher: Features, truth: GroundTruth):
        l_pr, per_level = self(student, teacher)
        nodes = {}
        for lv, projection in self.last_projections.items():  # the teacher units' graph nodes, on logged steps
            inside = box_mask(truth.boxes, (projection.shape[0], *projection.shape[2:]), 2 ** int(lv[1:]))
            purity, spread = node_purity(projection, inside.to(projection.device))
            nodes[f"t_node_purity_max_{lv}"] = float(purity.max())
            nodes[f"t_node_entropy_{lv}"] = spread
        return {"loss_pr": l_pr}, {**per_level_log("pr", per_level), **self.last_diagnostics, **nodes}
