"""Teacher-side graph units fitted once on the teacher's own detection loss (``distill.pr_teacher_units: fitted``).

In the paper's L_PR the teacher-side unit G_t learns only from the distillation loss, so nothing makes it a relation
of the teacher's: on the demo it stayed near pass-through. Fitted units are trained as residual blocks on the frozen
teacher's FPN levels, by the teacher's detection loss alone (``drkd_viz.engine.fit_units``), then frozen: the
relation they add is one the teacher's heads can use. They are cached beside the teacher,

    <teacher run>/fitted_units/units-<key>.safetensors      (+ .json: what was fitted, how, and the residual ratios)

where the key covers what the units are (levels, nodes, normalisation) and how they were fitted, so a distillation
run finds the file its settings describe, or says how to make it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from drkd_viz.distill.glore import GraphReasoningUnit
from drkd_viz.errors import UserError
from drkd_viz.models.weights import read_safetensors

FOLDER = "fitted_units"


@dataclass(frozen=True)
class UnitFit:
    """What the fitted units are and how they were fitted (all of it goes into the cache key)."""

    levels: tuple[str, ...]
    nodes: tuple[int, ...]
    normalize: bool
    iterations: int = 200
    batch_size: int = 8
    lr: float = 0.02  # SGD, momentum 0.9, cosine to 0
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def unit_fit(settings, levels: list[str] | None = None) -> UnitFit:
    """The fit a resolved ``distill:`` section asks for (its L_PR levels and node counts)."""
    levels = list(levels or settings.pr_levels)
    return UnitFit(
        tuple(levels), tuple(settings.nodes[lv] for lv in levels), settings.glore_normalize, settings.pr_fit_iterations
    )


def units_file(teacher: str | os.PathLike, fit: UnitFit) -> Path:
    return Path(teacher) / FOLDER / f"units-{fit.key()}.safetensors"


def build_units(channels: int, fit: UnitFit) -> nn.ModuleDict:
    """The units of ``fit``, untrained and zero-initialised (G(x) = x until fitted)."""
    return nn.ModuleDict(
        {
            lv: GraphReasoningUnit(channels, n, None, fit.normalize, True)
            for lv, n in zip(fit.levels, fit.nodes, strict=True)
        }
    )


def load_fitted_units(teacher: str | os.PathLike, channels: int, fit: UnitFit) -> nn.ModuleDict:
    """The frozen fitted units of ``teacher`` for ``fit``; a UserError says how to fit them when they are missing."""
    path = units_file(teacher, fit)
    if not path.is_file():
        raise UserError(
            f"distill.pr_teacher_units: fitted needs the teacher's fitted graph units ({path}); fit them with "
            f"`drkd-viz fit-units --teacher {teacher} --levels {','.join(fit.levels)} "
            f"--iterations {fit.iterations}` (the pipeline and scripts/probe_student.py do it by themselves)"
        )
    units = build_units(channels, fit)
    units.load_state_dict(read_safetensors(path))
    return units.eval().requires_grad_(False)


def fitted_state(units: Mapping[str, GraphReasoningUnit]) -> dict:
    return {k: v.detach().contiguous() for k, v in nn.ModuleDict(dict(units)).state_dict().items()}
