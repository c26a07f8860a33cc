"""The distiller: a frozen teacher, a trainable student, and the paper's loss (spec §1)

    L = L_det + λ_pr · L_PR + λ_ir · L_IR + λ_ins · L_INS          (method "drkd")
    L = L_det + λ_fi · L_FI                                       (method "feature_imitation")
    L = L_det + λ_pkd · L_PKD                                     (method "pkd")
    L = L_det + λ_ira · L_IRA + λ_pa · L_PA                       (method "relation": relation only)

DRKD may add the anchored relation terms L_IRA and L_PA and plain imitation L_FI (the controls' factorial).

The teacher runs in eval mode without gradients, on exactly the student's transformed batch; the
ground-truth boxes are taken in the student's transformed coordinates. The relation units and
adapters are trained with the student's optimiser and never exported with the student.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from drkd_viz.distill.base import DistillationLoss, GroundTruth
from drkd_viz.distill.config import TERM_KEYS, DistillConfig, active_terms, weight_factor
from drkd_viz.distill.config import formula as loss_formula
from drkd_viz.distill.controls import rotate_channels
from drkd_viz.distill.objective import Losses, Objective
from drkd_viz.errors import UserError
from drkd_viz.models.capture import fpn_features, record_forward
from drkd_viz.models.factory import DetectorConfig, build_detector
from drkd_viz.models.weights import load_exported_detector, load_weights

SAME_INPUT = ("min_size", "max_size", "image_mean", "image_std")


def load_teacher(settings: DistillConfig) -> tuple[nn.Module, DetectorConfig]:
    """The teacher named by ``distill.teacher``: a run folder, or a weights file with ``teacher_model``."""
    source = Path(settings.teacher)
    if source.is_dir():
        return load_exported_detector(source)
    if not source.is_file():
        raise UserError(f"distill.teacher: {source} is neither a run folder nor a weights file")
    if not settings.teacher_model:
        raise UserError(
            "distill.teacher_model: a teacher weights file needs its architecture "
            "(DetectorConfig fields: family, backbone, fpn_channels, num_classes, …)"
        )
    cfg = DetectorConfig(**settings.teacher_model)
    model = build_detector(cfg)
    load_weights(model, source)
    return model, cfg


def check_pair(student: DetectorConfig, teacher: DetectorConfig) -> None:
    if student.family != teacher.family:
        raise UserError(f"teacher ({teacher.family}) and student ({student.family}) must be of the same family")
    if student.levels != teacher.levels:
        raise UserError(f"teacher levels {teacher.levels} differ from the student's {student.levels}")
    differ = [k for k in SAME_INPUT if getattr(student, k) != getattr(teacher, k)]
    if differ:
        pairs = ", ".join(f"{k}: student {getattr(student, k)} vs teacher {getattr(teacher, k)}" for k in differ)
        raise UserError(f"the teacher sees the student's transformed images, so these must match: {pairs}")


class DistillationObjective(Objective):
    """The student's detection loss plus the weighted terms of :data:`drkd_viz.distill.config.TERMS` that the
    ``distill:`` section switches on: that one list decides which loss modules are built, what forward adds,
    what :meth:`formula` prints and which loss keys are logged."""

    frozen = ("teacher",)
    distillation_terms = TERM_KEYS

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        settings: DistillConfig,
        student_cfg: DetectorConfig,
        teacher_cfg: DetectorConfig,
    ):
        super().__init__(student)
        check_pair(student_cfg, teacher_cfg)
        self.teacher = teacher.eval().requires_grad_(False)
        self.settings = settings
        self.terms = active_terms(settings)
        keys = frozenset(term.key for term in self.terms)
        self.loss_modules: list[DistillationLoss] = []  # each module once, in TERMS order
        for loss_class in dict.fromkeys(term.module for term in self.terms):
            module = loss_class.from_settings(settings, student_cfg.fpn_channels, teacher_cfg.fpn_channels, keys)
            self.add_module(loss_class.attribute, module)  # checkpoint keys start with the attribute
            self.loss_modules.append(module)
        self._metrics: dict[str, float] = {}
        self._factor = 1.0  # the λ schedule's multiplier at the current step

    def set_progress(self, progress: float) -> None:
        self._factor = weight_factor(self.settings.weight_schedule, progress)

    def watch(self, on: bool) -> None:
        for module in self.loss_modules:
            module.collect_diagnostics = on

    def weight(self, key: str) -> float:
        """λ of a term at the current step."""
        return self._factor * self.settings.weight(key)

    def forward(self, images: list[torch.Tensor], targets: list[dict]) -> Losses:
        """L = L_det + Σ λ·L_term over the active terms, in :data:`TERMS` order (the order they are summed)."""
        with record_forward(self.student) as rec:
            losses = dict(self.student(images, targets))  # L_det
        with torch.no_grad():
            teacher = fpn_features(self.teacher, rec.images.tensors)  # T_l, on the student's exact input
            if self.settings.rotate_teacher:  # the control that scrambles imitation and keeps relations
                teacher = rotate_channels(teacher)
        student = rec.features  # S_l
        truth = GroundTruth.from_targets(rec.targets, rec.images.image_sizes)  # in transformed coordinates
        unweighted, self._metrics = {}, {}
        for module in self.loss_modules:
            values, logged = module.terms(student, teacher, truth)
            unweighted.update(values)
            self._metrics.update(logged)
        for term in self.terms:
            losses[term.key] = self.weight(term.weight) * unweighted[term.key]
        return losses

    def formula(self) -> str:
        return loss_formula(self.settings)

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        student = [p for p in self.student.parameters() if p.requires_grad]
        if self.settings.clip != "separate":
            return super().parameter_groups()
        ids = {id(p) for p in student}
        return [student, [p for p in self.parameters() if p.requires_grad and id(p) not in ids]]

    def metrics(self) -> dict[str, float]:
        return self._metrics


def build_distiller(
    student: nn.Module, settings: DistillConfig, student_cfg: DetectorConfig, device: torch.device
) -> DistillationObjective:
    teacher, teacher_cfg = load_teacher(settings)
    return DistillationObjective(student, teacher.to(device), settings, student_cfg, teacher_cfg)


def build_objective(
    student: nn.Module, distill: DistillConfig | None, model_cfg: DetectorConfig, device: torch.device
) -> Objective:
    """Plain detection training for method ``none`` (no section), else the distillation objective: every
    method is a set of terms (``config.METHOD_WEIGHTS``), so one objective serves them all."""
    if distill is None or distill.method == "none":
        return Objective(student)
    return build_distiller(student, distill, model_cfg, device)
