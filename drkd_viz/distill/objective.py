"""What one training step minimises, as a module the engine can call without knowing the method.

The engine only does:  ``losses = objective(images, targets); loss = sum(losses.values())``
and optimises every parameter of the objective that requires grad. A distillation method
subclasses :class:`Objective`, keeps its frozen teacher in ``self.teacher`` (never optimised,
never checkpointed) and registers its own trainable modules (adapters, relation units) as
submodules: they are optimised with the student and saved in checkpoints, but left out of the
exported student.
"""

from __future__ import annotations

import torch
from torch import nn

from drkd_viz.errors import UserError

Losses = dict[str, torch.Tensor]


class Objective(nn.Module):
    """Plain detection training: L = L_det (the detector's own loss terms)."""

    frozen: tuple[str, ...] = ()  # attribute names of submodules that are not trained nor checkpointed
    # loss keys the method adds to the detector's own terms (the rest of forward's dict is L_det)
    distillation_terms: tuple[str, ...] = ()

    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student

    def forward(self, images: list[torch.Tensor], targets: list[dict]) -> Losses:
        return self.student(images, targets)

    def formula(self) -> str:
        """The loss this objective computes, as it would be written in the paper."""
        return "L = L_det"

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """The trainable parameters as optimiser groups, each clipped on its own; the student's come first
        (one group by default: one clip over everything, the authors' behaviour)."""
        return [[p for p in self.parameters() if p.requires_grad]]

    def set_progress(self, progress: float) -> None:
        """Told by the engine before each step how far training is (0 at the start, 1 at the end); a
        method whose weights follow a schedule uses it."""

    def watch(self, on: bool) -> None:
        """Told by the engine before each step whether it logs diagnostics (every ``train.log_every``
        iterations); a method then records what it measures in :meth:`metrics`."""

    def metrics(self) -> dict[str, float]:
        """Unweighted diagnostics of the last forward (e.g. a loss per FPN level), logged, not optimised."""
        return {}

    def train(self, mode: bool = True) -> Objective:
        super().train(mode)
        for name in self.frozen:  # a frozen teacher stays in eval mode (BatchNorm statistics fixed)
            getattr(self, name).eval()
        return self

    def _is_frozen(self, key: str) -> bool:
        return key.startswith(tuple(f"{n}." for n in self.frozen))

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Everything a checkpoint must hold: student + method modules, without frozen ones."""
        return {k: v for k, v in self.state_dict().items() if not self._is_frozen(k)}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not self._is_frozen(k)]
        if missing or unexpected:
            raise UserError(f"checkpoint does not fit this run: missing {missing[:5]}, unexpected {unexpected[:5]}")
