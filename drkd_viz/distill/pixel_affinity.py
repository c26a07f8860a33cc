"""L_PA: the pixel-wise relation anchored to the teacher (our variant of the paper's L_PR).

In the paper's L_PR, ‖f(G_s(S)) − G_t(T)‖, the graph unit G_t is trained only by that loss; on the demo it stayed
near pass-through (‖G_t(x) − x‖ / ‖x‖ 0.07–0.10), which leaves L_PR a feature imitation through a 1x1 adapter.
L_PA compares what the paper's Fig. 1 draws, the global relation between pixels, with nothing learned on either
side: each level pooled to at most ``grid`` x ``grid`` cells, each channel centred, and the cosine between every
pair of cells (``relations.pixel_affinity``):

    L_PA = Σ_levels mean( (Aff(S_l) − Aff(T_l))² ),   Aff(x)_pq = cos(x̄_p, x̄_q)

The student's affinity comes from its own channels (no adapter), so only a change of its features lowers the loss,
and a rotation of the teacher's channels leaves the target unchanged. With ``shuffle`` the teacher's cells are
permuted within each image first (the control of ``controls.py``). With ``norm: frobenius`` each image's
‖Aff(S_l) − Aff(T_l)‖ is summed over images, as the authors' ``torch.dist`` does for their terms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from drkd_viz.distill.base import DistillationLoss, Features, GroundTruth, per_level_log
from drkd_viz.distill.norms import safe_sqrt
from drkd_viz.distill.pixel_relation import check_shapes
from drkd_viz.distill.relations import pixel_affinity


class PixelAffinityLoss(DistillationLoss):
    attribute = "pixel_affinity"

    def __init__(self, levels: list[str], grid: int = 12, shuffle: bool = False, norm: str = "mse"):
        super().__init__()
        self.levels, self.grid, self.shuffle, self.norm = list(levels), grid, shuffle, norm

    @classmethod
    def from_settings(cls, settings: Any, student_channels: int, teacher_channels: int, keys: frozenset[str]):
        return cls(settings.pa_levels, settings.pa_grid, settings.shuffle_relations, settings.norm)

    def forward(
        self,
        student: Mapping[str, torch.Tensor],
        teacher: Mapping[str, torch.Tensor],
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_PA summed over levels, and its value per level."""
        per_level = {}
        for lv in self.levels:
            check_shapes(student[lv], teacher[lv], lv, "L_PA")
            a_s, a_t = pixel_affinity(student[lv], self.grid), pixel_affinity(teacher[lv], self.grid)
            if self.shuffle:  # the same random order of the cells for rows and columns, per image
                perms = torch.stack([torch.randperm(a_t.shape[1], generator=generator) for _ in range(len(a_t))])
                perms = perms.to(a_t.device)
                a_t = torch.stack([m[p][:, p] for m, p in zip(a_t, perms, strict=True)])
            if self.norm == "frobenius":  # the authors' torch.dist: ‖A_s − A_t‖ per image, summed over images
                per_level[lv] = safe_sqrt((a_s - a_t).pow(2).flatten(1).sum(1)).sum()
            else:
                per_level[lv] = (a_s - a_t).pow(2).mean()
        return torch.stack(list(per_level.values())).sum(), per_level

    def terms(self, student: Features, teacher: Features, truth: GroundTruth):
        loss, per_level = self(student, teacher)
        return {"loss_pa": loss}, per_level_log("pa", per_level)
