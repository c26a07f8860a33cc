"""Comparison methods in the same pipeline as DRKD.

* Plain FPN feature imitation (FitNet-style): a 1x1 adapter per level and the mean squared error to
  the teacher's feature, summed over levels:   L_FI = Σ_levels mean( (f(S_l) − T_l)² )
* PKD (Cao et al., "PKD: General Distillation Framework for Object Detectors via Pearson Correlation
  Coefficient", NeurIPS 2022): each channel of both features standardised over the batch and the pixels
  (N·H·W) first, so the loss no longer depends on the features' magnitudes, then half the MSE:
      L_PKD = Σ_levels ½ · mean( (ẑ(f(S_l)) − ẑ(T_l))² ),   ẑ(x)_c = (x_c − mean_c) / std_c
  For standardised channels ½·MSE = 1 − r (Pearson's r) up to the (n−1)/n of the unbiased std, so each
  level's term lies in [0, 2]. The paper's students and teachers share the FPN width; here a 1x1 adapter
  f first maps the student's channels to the teacher's, as for feature imitation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from drkd_viz.distill.base import DistillationLoss, Features, GroundTruth, per_level_log
from drkd_viz.distill.norms import feature_distance, standardise_channels
from drkd_viz.distill.pixel_relation import check_shapes


class FeatureImitationLoss(DistillationLoss):
    attribute, term, key = "imitation", "L_FI", "fi"

    def __init__(self, levels: list[str], student_channels: int, teacher_channels: int, norm: str = "mse"):
        super().__init__()
        self.levels, self.norm = list(levels), norm
        self.adapters = nn.ModuleDict({lv: nn.Conv2d(student_channels, teacher_channels, 1) for lv in self.levels})

    @classmethod
    def from_settings(cls, settings: Any, student_channels: int, teacher_channels: int, keys: frozenset[str]):
        return cls(settings.fi_levels, student_channels, teacher_channels, settings.norm)

    def level_distance(self, adapted: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return feature_distance(adapted, teacher, self.norm)

    def forward(
        self, student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        per_level = {}
        for lv in self.levels:
            check_shapes(student[lv], teacher[lv], lv, self.term)
            per_level[lv] = self.level_distance(self.adapters[lv](student[lv]), teacher[lv])
        return torch.stack(list(per_level.values())).sum(), per_level

    def terms(self, student: Features, teacher: Features, truth: GroundTruth):
        loss, per_level = self(student, teacher)
        return {f"loss_{self.key}": loss}, per_level_log(self.key, per_level)


class PearsonImitationLoss(FeatureImitationLoss):
    """L_PKD (see the module docstring): returns the sum over levels and the value per level."""

    attribute, term, key = "pearson", "L_PKD", "pkd"

    def __init__(self, levels: list[str], student_channels: int, teacher_channels: int):
        super().__init__(levels, student_channels, teacher_channels)

    @classmethod
    def from_settings(cls, settings: Any, student_channels: int, teacher_channels: int, keys: frozenset[str]):
        return cls(settings.pkd_levels, student_channels, teacher_channels)

    def level_distance(self, adapted: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return 0.5 * (standardise_channels(adapted) - standardise_channels(teacher)).pow(2).mean()
