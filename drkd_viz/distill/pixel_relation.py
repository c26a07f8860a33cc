"""Pixel-wise relation distillation L_PR (spec §2): a graph-reasoning unit per FPN level on each side,
a 1x1 adapter f on the student side (which also fixes a channel mismatch C_s -> C_t):

    L_PR = Σ_levels ‖ f(G_s(S_l)) − G_t(T_l) ‖
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from drkd_viz.distill.glore import GraphReasoningUnit
from drkd_viz.distill.norms import feature_distance
from drkd_viz.errors import UserError


def check_shapes(student: torch.Tensor, teacher: torch.Tensor, level: str, what: str) -> None:
    if student.shape[0] != teacher.shape[0] or student.shape[2:] != teacher.shape[2:]:
        raise UserError(
            f"{what} at level {level}: student feature {tuple(student.shape)} and teacher feature "
            f"{tuple(teacher.shape)} differ in batch or spatial size; teacher and student must see the same input "
            "(same min_size/max_size and the same FPN strides)"
        )


class PixelRelationLoss(nn.Module):
    def __init__(
        self,
        levels: list[str],
        student_channels: int,
        teacher_channels: int,
        nodes: Mapping[str, int],
        normalize: bool = True,
        norm: str = "mse",
    ):
        super().__init__()
        self.levels, self.norm = list(levels), norm
        self.student_units = nn.ModuleDict(
            {lv: GraphReasoningUnit(student_channels, nodes[lv], normalize=normalize) for lv in self.levels}
        )
        self.teacher_units = nn.ModuleDict(
            {lv: GraphReasoningUnit(teacher_channels, nodes[lv], normalize=normalize) for lv in self.levels}
        )
        self.adapters = nn.ModuleDict({lv: nn.Conv2d(student_channels, teacher_channels, 1) for lv in self.levels})

    def forward(
        self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns L_PR and its value per level."""
        per_level = {}
        for lv in self.levels:
            check_shapes(student[lv], teacher[lv], lv, "L_PR")
            s = self.adapters[lv](self.student_units[lv](student[lv]))
            t = self.teacher_units[lv](teacher[lv])
            per_level[lv] = feature_distance(s, t, self.norm)
        return torch.stack(list(per_level.values())).sum(), per_level
