"""Diagnostics that answer "distillation did not help: why?", logged every ``train.log_every`` iterations.

Two questions, three measures:

* **Does a distillation term fight the detector?** For each weighted term, the norm of its gradient on the
  student's parameters and its cosine with the detection loss's gradient (:func:`gradient_report`). A
  term whose gradient dwarfs ∇L_det, or points against it (cosine < 0), takes the step away from
  detection; the trainer also logs the clip factor the gradient clip applied to the whole step.
* **Does the teacher side tell the student anything?** The teacher-side units are trained only by the
  distillation loss, so they can collapse:
    - :func:`relation_entropy_ratio`: the mean row entropy of a relation matrix over log N. 1 means
      uniform rows (every instance relates equally to every other: nothing to learn); near 0, one-hot;
    - :func:`residual_ratio`: ‖BN(W_ext·Y)‖ / ‖x‖ of a graph unit G(x) = x + BN(W_ext·Y). 0 means G
      passes x through, and L_PR becomes plain feature imitation; large means the target is mostly the
      output of a unit nothing but L_PR has trained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch


def relation_entropy_ratio(matrix: torch.Tensor, image_index: torch.Tensor) -> float | None:
    """Mean over rows of H(row) / log N, for the rows of images with N ≥ 2 instances (an image with one
    instance has no relation to measure). ``matrix``: K x K, block-diagonal by ``image_index``, rows sum
    to 1. None when no image has two instances."""
    counts = torch.bincount(image_index)
    n = counts[image_index].to(matrix.dtype)  # instances in each row's image
    rows = n >= 2
    if not bool(rows.any()):
        return None
    p = matrix[rows].detach()
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(1)  # zero entries contribute 0
    return float((entropy / torch.log(n[rows])).mean())


def residual_ratio(residual: torch.Tensor, x: torch.Tensor) -> float:
    """‖residual‖ / ‖x‖ over the whole batch: how much a residual unit x + residual changes its input."""
    return float(residual.detach().norm() / x.detach().norm().clamp_min(1e-12))


def term_gradients(
    terms: Mapping[str, torch.Tensor], params: Sequence[torch.nn.Parameter]
) -> dict[str, list[torch.Tensor]]:
    """∇term on ``params`` for each term, without touching ``.grad`` (the graph is kept for the real
    backward). A parameter a term does not reach gets a zero gradient."""
    grads = {}
    for name, term in terms.items():
        found = torch.autograd.grad(term, list(params), retain_graph=True, allow_unused=True)
        grads[name] = [torch.zeros_like(p) if g is None else g for g, p in zip(found, params, strict=True)]
    return grads


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b, strict=True)))


def gradient_report(grads: Mapping[str, list[torch.Tensor]], reference: str = "loss_det") -> dict[str, float]:
    """``grad_<term>``: ‖∇term‖ for every term; ``cos_<term>``: cosine of ∇term with ∇``reference`` for the
    others (0 when either gradient is zero)."""
    norms = {name: math.sqrt(max(_dot(g, g), 0.0)) for name, g in grads.items()}
    report = {f"grad_{name}": value for name, value in norms.items()}
    base = grads[reference]
    for name, g in grads.items():
        if name != reference:
            denominator = norms[name] * norms[reference]
            report[f"cos_{name}"] = _dot(g, base) / denominator if denominator > 0 else 0.0
    return report


def step_gradient_report(
    params: Sequence[torch.nn.Parameter], term_grads: Mapping[str, list[torch.Tensor]], scale: float = 1.0
) -> dict[str, float]:
    """After the step's real backward (before clipping): :func:`gradient_report` of ∇L_det and each term in
    ``term_grads`` (from :func:`term_gradients`, taken ``scale`` times too large under a loss scaler), with
    ∇L_det = what the backward left in ``.grad`` minus the terms' gradients."""
    terms = {k: [g / scale for g in grads] for k, grads in term_grads.items()}
    total = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
    detection = [t - sum(grads[i] for grads in terms.values()) for i, t in enumerate(total)]
    return gradient_report({"loss_det": detection, **terms}, reference="loss_det")
