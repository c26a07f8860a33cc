"""The one interface of a distillation loss module, so that the objective builds and calls every term alike.

A loss module is a pure ``nn.Module`` (its ``forward`` is tested on random tensors) that also has

* ``from_settings(settings, student_channels, teacher_channels, keys)`` — built from the resolved ``distill:``
  section; ``keys`` are the loss keys of its terms that are switched on (one module may give two terms);
* ``terms(student, teacher, truth)`` — the unweighted terms by loss key, and what it logs (floats);
* ``attribute`` — the objective's attribute that holds it (checkpoint keys start with it).

Adding a term means writing its module, one entry in ``config.TERMS`` and its tests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

Features = Mapping[str, torch.Tensor]  # FPN level name -> B x C x H x W


@dataclass
class GroundTruth:
    """The batch's annotations in the detector's transformed coordinates (where features are pooled)."""

    boxes: list[torch.Tensor]  # per image, N_i x 4 (x1, y1, x2, y2)
    labels: list[torch.Tensor]  # per image, N_i
    image_sizes: list[tuple[int, int]]  # per image, (h, w) before padding

    @classmethod
    def from_targets(cls, targets: list[dict[str, torch.Tensor]], image_sizes: list[tuple[int, int]]) -> GroundTruth:
        return cls([t["boxes"] for t in targets], [t["labels"] for t in targets], [tuple(s) for s in image_sizes])


class DistillationLoss(nn.Module, ABC):
    attribute: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        # set by the objective on the steps it logs: the module then records what it measures
        self.collect_diagnostics = False

    # settings: the resolved DistillConfig (typed Any: config.py imports the loss modules, not the other way round)
    @classmethod
    @abstractmethod
    def from_settings(
        cls, settings: Any, student_channels: int, teacher_channels: int, keys: frozenset[str]
    ) -> DistillationLoss:
        """The module a resolved ``distill:`` section describes."""

    @abstractmethod
    def terms(
        self, student: Features, teacher: Features, truth: GroundTruth
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The unweighted terms by loss key, and what to log."""


def per_level_log(prefix: str, per_level: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """``{prefix}_{level}``: each level's value as a float, for the metrics log."""
    return {f"{prefix}_{lv}": float(v.detach()) for lv, v in per_level.items()}
