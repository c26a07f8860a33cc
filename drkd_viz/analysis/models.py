"""The detectors a comparison needs, loaded once from a runs folder, with the relation units to inspect them.

    models = load_model_set("runs/demo")                 # teacher, baseline and DRKD students (+ feature imitation)
    dataset = test_split("runs/demo")
    image, boxes, labels = image_and_boxes(dataset, 0)
    feats = models.features("drkd", image)              # FPN features only (no detection heads)

Which relation units go with which detector (see :mod:`drkd_viz.distill.inspection`): the teacher is seen through
the DRKD run's teacher-side units (G_t, R_t); every student, the baseline included, through the DRKD student's
units (G_s, R_s). The baseline never trained units of its own, so the students are compared through the same lens
and a difference between their maps comes from their features.

The analyses need only the FPN features, so they run the transform and the backbone alone (``ModelSet.features``)
and skip the detection heads (proposals, box head, NMS), whose output none of them uses; ``ModelSet.inspect`` is
the full forward with detections.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from drkd_viz.data.coco import CocoDetection
from drkd_viz.distill.inspection import Inspection, RelationUnits, inspect_image
from drkd_viz.distill.instance_relation import level_stride
from drkd_viz.engine.checkpoint import final_weights
from drkd_viz.engine.config import load_config
from drkd_viz.engine.inference import load_student, read_run_config
from drkd_viz.errors import UserError
from drkd_viz.models.capture import fpn_features, transform_inputs
from drkd_viz.runs import RunFolder, RunsRoot, report_runs_of_seed, report_split_files, run_name

MODEL_ROLES: tuple[str, ...] = ("teacher", "baseline", "drkd")  # display order
OPTIONAL_ROLES: tuple[str, ...] = ("feature_imitation", "pkd")  # loaded when the runs folder has it
ROLE_TITLES: dict[str, str] = {
    "teacher": "teacher",
    "baseline": "baseline student",
    "feature_imitation": "feature-imitation student",
    "pkd": "PKD student",
    "drkd": "DRKD student",
}


def _build_hint(runs: Path) -> str:
    return f"build it with `drkd-viz pipeline --preset demo --out {runs}` (or --preset quick for a fast check)"


def run_dir(runs: str | os.PathLike, role: str, seed: int = 0, report: dict[str, Any] | None = None) -> Path:
    """The ``role`` run of ``seed``: the folder ``report`` names for it when a report is given (a study keeps
    its runs in ``RUNS/study/``), else ``RUNS/teacher`` or ``RUNS/<role>-s<seed>``. A UserError names the
    missing run and how to build it."""
    runs = Path(runs)
    if report is not None:
        return _report_run(runs, role, seed, report)
    name = run_name(role, seed)
    folder = runs / name
    if RunFolder(folder).exists():
        return folder
    if not runs.is_dir():
        raise UserError(f"runs folder not found: {runs}; {_build_hint(runs)}")
    present = sorted(p.name for p in runs.iterdir() if RunFolder(p).exists())
    seeds = sorted(p.name for p in runs.glob(f"{role}-s*") if RunFolder(p).exists())
    other = f"; this folder has {', '.join(seeds)} (pick that seed)" if seeds and role != "teacher" else ""
    raise UserError(
        f"{runs} has no {ROLE_TITLES.get(role, role)} run {name!r} (runs there: {', '.join(present) or 'none'})"
        f"{other}; {_build_hint(runs)}"
    )


def _report_run(runs: Path, role: str, seed: int, report: dict[str, Any]) -> Path:
    preset = report.get("preset", "?")
    if role not in report.get("models", {}):
        raise UserError(f"the {preset!r} report has no {role!r} model (it has {list(report.get('models', {}))})")
    folder = report_runs_of_seed(runs, report, seed).get(role)
    if folder is None:
        seeds = report["models"][role].get("seeds", [])
        raise UserError(f"the {preset!r} report has no {role!r} run of seed {seed} (its seeds: {seeds})")
    if not RunFolder(folder).exists():
        raise UserError(
            f"the {preset!r} report names the run {folder}, which is gone; rebuild it with "
            f"`drkd-viz pipeline --preset {preset} --out {runs}`"
        )
    return folder


@dataclass
class FeatureView:
    """The FPN features of one detector for one image, as its heads would see them."""

    role: str
    image_size: tuple[int, int]  # (H, W) of the image given
    input_size: tuple[int, int]  # (h, w) after the detector's resize, before padding to a multiple of 32
    features: OrderedDict[str, torch.Tensor]  # level -> 1 x C x h x w, padded (what the relation units see)

    def valid(self, level: str) -> tuple[float, float]:
        """How many feature pixels (rows, columns) of ``level`` the image covers; the rest is padding."""
        stride = level_stride(level)
        return self.input_size[0] / stride, self.input_size[1] / stride

    def crop(self, x: torch.Tensor, level: str) -> torch.Tensor:
        """``x`` (... x h x w at ``level``) without the padding rows and columns."""
        vh, vw = self.valid(level)
        return x[..., : math.ceil(vh), : math.ceil(vw)]


@dataclass
class ModelSet:
    """Detectors in eval mode on the CPU, by role, and the relation units each one is inspected with."""

    runs: Path
    seed: int
    models: dict[str, nn.Module]  # role -> detector
    units: dict[str, RelationUnits]  # role -> relation units (teacher: G_t/R_t; students: the DRKD student's)
    run_dirs: dict[str, Path]
    levels: tuple[str, ...] = ("P2", "P3", "P4", "P5", "P6")  # the detectors' FPN levels

    @property
    def roles(self) -> list[str]:
        """The loaded roles in display order (teacher, baseline, feature imitation, PKD, DRKD)."""
        order = ("teacher", "baseline", "feature_imitation", "pkd", "drkd")
        return [r for r in order if r in self.models]

    def select(self, roles: Sequence[str] | None) -> list[str]:
        """``roles`` checked against what is loaded; ``None``: the teacher, baseline and DRKD students."""
        wanted = list(MODEL_ROLES if roles is None else roles)
        unknown = [r for r in wanted if r not in self.models]
        if unknown:
            raise UserError(f"no model for roles {unknown}; this model set has {self.roles}")
        return wanted

    def has_graph_units(self) -> bool:
        """Whether the DRKD run trained graph-reasoning units (its L_PR was on)."""
        return len(self.units["drkd"].pixel) > 0

    def pixel_levels(self) -> list[str]:
        """FPN levels that have graph-reasoning units (pixel relations); every level when the DRKD run has none
        (the maps then show the plain feature only)."""
        return list(self.units["drkd"].pixel.keys()) or list(self.levels)

    def instance_levels(self) -> list[str]:
        """FPN levels that have relation modules (instance relations); without them (a DRKD run whose L_IR was off),
        the two finest levels, where the parameter-free relation is shown instead."""
        return list(self.units["drkd"].relations.keys()) or list(self.levels[:2])

    def check_level(self, level: str, kind: str) -> None:
        levels = self.pixel_levels() if kind == "pixel" else self.instance_levels()
        if level not in levels:
            what = "graph-reasoning units" if kind == "pixel" else "instance relations"
            raise UserError(
                f"level {level!r} has no {what} in {self.run_dirs['drkd'].name}; levels with them: {levels or 'none'}"
            )

    @torch.no_grad()
    def features(self, role: str, image: torch.Tensor) -> FeatureView:
        """The ``role`` detector's FPN features of ``image`` (3 x H x W in [0, 1]): its own resize and
        normalisation, then the backbone alone."""
        self.select([role])
        model = self.models[role]
        images, _ = transform_inputs(model, [image])
        h, w = images.image_sizes[0]
        return FeatureView(
            role, (int(image.shape[-2]), int(image.shape[-1])), (h, w), fpn_features(model, images.tensors)
        )

    def inspect(
        self, role: str, image: torch.Tensor, boxes: torch.Tensor | None = None, levels: list[str] | None = None
    ) -> Inspection:
        """The full forward of the ``role`` detector (detections included) through its relation units
        (see :func:`drkd_viz.distill.inspection.inspect_image`)."""
        self.select([role])
        return inspect_image(self.models[role], image, boxes, self.units[role], levels)


def load_relation_units(run_dir: str | os.PathLike, side: str = "student") -> RelationUnits:
    """One side (``student`` or ``teacher``) of a finished DRKD run's trained relation units, from its config and
    final checkpoint."""

    run = Path(run_dir)
    folder = RunFolder(run)
    settings = load_config(folder.config).distill
    if settings is None or settings.method != "drkd":
        method = settings.method if settings else "none"
        raise UserError(f"{run} is not a DRKD run (distill.method is {method!r})")
    return RelationUnits.from_state(final_weights(folder.checkpoints), settings, side, run.name)


def load_model_set(runs: str | os.PathLike, seed: int = 0, report: dict[str, Any] | None = None) -> ModelSet:
    """Teacher, baseline and DRKD students of ``runs`` (and the feature-imitation and PKD students when present)
    with the DRKD run's relation units: the runs ``report`` names for ``seed`` when a report is given, else
    those at the top of ``runs`` (``RUNS/<role>-s<seed>``). A missing or unfinished run is a UserError that says
    how to build it."""

    runs = Path(runs)
    dirs = {role: run_dir(runs, role, seed, report) for role in MODEL_ROLES}
    named = report_runs_of_seed(runs, report, seed) if report is not None else {}
    for role in OPTIONAL_ROLES:
        if role in named:
            dirs[role] = run_dir(runs, role, seed, report)
        elif report is None and RunFolder(runs / run_name(role, seed)).exists():
            dirs[role] = runs / run_name(role, seed)
    models = {}
    for role, folder in dirs.items():
        try:
            models[role], _ = load_student(folder, "cpu")
        except UserError as exc:
            raise UserError(f"cannot load the {ROLE_TITLES[role]} from {folder}: {exc}; {_build_hint(runs)}") from None
    teacher_units = load_relation_units(dirs["drkd"], side="teacher")
    student_units = load_relation_units(dirs["drkd"], side="student")
    units = {role: teacher_units if role == "teacher" else student_units for role in dirs}
    levels = tuple(read_run_config(dirs["drkd"]).model.levels)
    return ModelSet(runs, seed, models, units, dirs, levels)


def test_split(runs: str | os.PathLike, report: dict[str, Any] | None = None) -> CocoDetection:
    """The split the models are compared on, images as float tensors in [0, 1]: the one ``report`` was measured
    on when a report is given, else the pipeline's test split (``RUNS/data/test``)."""
    if report is None:
        images, annotations = RunsRoot(Path(runs)).split_files("test")
        if not annotations.is_file():
            raise UserError(f"{annotations.parent} holds no {annotations.name}; {_build_hint(Path(runs))}")
        return CocoDetection(images, annotations)
    images, annotations = report_split_files(runs, report)
    if not annotations.is_file():
        raise UserError(f"{annotations}, the split the {report.get('preset', '?')!r} report was measured on, is gone")
    return CocoDetection(images, annotations)


def _check_index(dataset: CocoDetection, index: int) -> None:
    if not 0 <= index < len(dataset):
        raise UserError(f"image index {index} is out of range: the split has {len(dataset)} images (0…)")


def image_and_boxes(dataset: CocoDetection, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image ``index`` of ``dataset`` (3 x H x W in [0, 1]), its ground-truth boxes (N x 4, x1 y1 x2 y2 in the
    image's own pixels, crowd boxes left out) and labels (N)."""
    _check_index(dataset, index)
    image, target = dataset[index]
    return image, target["boxes"], target["labels"]


def instance_areas(dataset: CocoDetection, index: int) -> np.ndarray:
    """The annotations' ``area`` (what COCO's small / medium / large split uses: the visible pixels, not the box)
    of the boxes :func:`image_and_boxes` returns, in the same order."""
    _check_index(dataset, index)
    anns = [a for a in dataset.coco.imgToAnns[dataset.ids[index]] if not a.get("iscrowd", 0)]
    return np.array([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns], dtype=np.float64)
