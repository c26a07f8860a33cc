"""Comparison methods in the same pipeline as DRKD.

Plain FPN feature imitation (FitNet-style): a 1x1 adapter per level and the mean squared error to
the teacher's feature, summed over levels:   L_FI = Σ_levels mean( (f(S_l) − T_l)² )
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from drkd_viz.distill.norms import feature_distance
from drkd_viz.distill.pixel_relation import check_shapes


class FeatureImitationLoss(nn.Module):
    def __init__(self, levels: list[str], student_channels: int, teacher_channels: int, norm: str = "mse"):
        super().__init__()
        self.levels, self.norm = list(levels), norm
        self.adapters = nn.ModuleDict({lv: nn.Conv2d(student_channels, teacher_channels, 1) for lv in self.levels})

    def forward(
        self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        per_level = {}
        for lv in self.levels:
            check_shapes(student[lv], teacher[lv], lv, "L_FI")
            per_level[lv] = feature_distance(self.adapters[lv](student[lv]), teacher[lv], self.norm)
        return torch.stack(list(per_level.values())).sum(), per_level
