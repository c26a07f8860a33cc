"""The distances the distillation losses use, in two scales:

* ``frobenius`` — the authors' code: ‖a − b‖₂ over the whole tensor, unnormalised, so its size grows
  with batch, channels and resolution (√ of the element count);
* ``mse`` — our default: the mean of the squared difference, the same at any batch or image size,
  so one loss weight fits every configuration.
"""

from __future__ import annotations

import torch


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """√x with a zero (not infinite) gradient where x = 0."""
    return torch.where(x > 0, x.clamp_min(1e-30).sqrt(), torch.zeros_like(x))


def feature_distance(a: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "frobenius":
        return safe_sqrt((a - b).pow(2).sum())
    return (a - b).pow(2).mean()


def grouped_distance(
    sq_rows: torch.Tensor, groups: torch.Tensor, n_groups: int, total_elements: int, norm: str
) -> torch.Tensor:
    """Distance between two sets of rows that belong to images (``groups``), from per-row squared errors.

    ``frobenius``: Σ_images √(Σ_rows of the image sq) — the authors' per-image norm, summed over images;
    ``mse``: Σ sq / total_elements — the mean squared error over every element of every image.
    An image without rows contributes exactly 0 in both."""
    if sq_rows.numel() == 0:
        return sq_rows.sum()  # a zero that keeps the graph
    if norm == "frobenius":
        per_image = torch.zeros(n_groups, dtype=sq_rows.dtype, device=sq_rows.device).index_add(0, groups, sq_rows)
        return safe_sqrt(per_image).sum()
    return sq_rows.sum() / total_elements


def standardise_channels(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each channel to zero mean and unit (unbiased) std over every other axis: N·H·W of an N x C x H x W
    feature, the K instances of a K x D matrix of instance vectors."""
    axes = (0, *range(2, x.dim()))
    mean = x.mean(dim=axes, keepdim=True)
    std = x.std(dim=axes, keepdim=True) if x.shape[0] * x[0, 0].numel() > 1 else torch.ones_like(mean)
    return (x - mean) / (std + eps)
