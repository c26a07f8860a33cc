"""What a relation matrix carries, measured: logged during training (diagnostics), and over a split for every model
(``drkd_viz.analysis.relation_metrics``).

* **Class structure** — :func:`same_class_auc`: over the ordered pairs (i, j), i ≠ j, of ground-truth instances of
  one image, how well the relation value A_ij ranks same-class pairs above different-class ones (the area under the
  ROC curve: 1 when every same-class pair relates more strongly than every other pair, 0.5 for no information).
* **Graph nodes** — :func:`node_purity`: for a graph unit, each node's share of pixels inside ground-truth boxes and
  how spread the pixels' node assignment is.
* **Agreement** — :func:`row_agreement`: per row of a student's relation and the teacher's, the L1 distance (0…2
  for rows that sum to 1) and Spearman's rank correlation (does the student rank the other nodes as the teacher
  does?).
"""

from __future__ import annotations

import math

import torch

from drkd_viz.distill.relations import pair_mask


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of ``values`` (1-D), ties sharing their mean rank."""
    order = torch.argsort(values, stable=True)
    sorted_values = values[order]
    ranks = torch.empty_like(values, dtype=torch.float64)
    ranks[order] = torch.arange(1, len(values) + 1, dtype=torch.float64, device=values.device)
    # ties: every member of a run of equal values gets the run's mean rank
    _, inverse, counts = torch.unique_consecutive(sorted_values, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(counts), dtype=torch.float64, device=values.device).index_add(0, inverse, ranks[order])
    ranks[order] = (sums / counts)[inverse]
    return ranks


def auc(scores: torch.Tensor, positive: torch.Tensor) -> float | None:
    """Area under the ROC curve of ``scores`` for the boolean labels ``positive`` (the Mann-Whitney statistic,
    ties counting ½); None when either class is empty."""
    positive = positive.bool()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(scores.detach().double())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def instance_pairs(image_index: torch.Tensor, is_instance: torch.Tensor | None = None) -> torch.Tensor:
    """K x K mask of the ordered pairs (i ≠ j, same image) of ground-truth instances (``is_instance`` leaves out
    background nodes)."""
    mask = pair_mask(image_index)
    if is_instance is not None:
        mask = mask & is_instance[:, None] & is_instance[None, :]
    return mask


def same_class_pair_scores(
    matrix: torch.Tensor, image_index: torch.Tensor, labels: torch.Tensor, is_instance: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The relation values of the instance pairs and whether each pair shares its class."""
    mask = instance_pairs(image_index, is_instance)
    same = labels[:, None] == labels[None, :]
    return matrix.detach()[mask], same[mask]


def same_class_auc(
    matrix: torch.Tensor, image_index: torch.Tensor, labels: torch.Tensor, is_instance: torch.Tensor | None = None
) -> float | None:
    """AUC of "same class" from the relation values A_ij of the instance pairs (see the module docstring)."""
    scores, same = same_class_pair_scores(matrix, image_index, labels, is_instance)
    return auc(scores, same)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Spearman's rank correlation of two 1-D tensors; None for fewer than 3 values or a constant one."""
    if len(a) < 3:
        return None
    ra, rb = average_ranks(a.detach().double()), average_ranks(b.detach().double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denominator if denominator > 0 else None


def row_agreement(
    student: torch.Tensor, teacher: torch.Tensor, image_index: torch.Tensor
) -> tuple[torch.Tensor, list[float | None]]:
    """Per row of two K x K relation matrices (over the pairs of :func:`pair_mask`): the L1 distance and
    Spearman's correlation (None where a row has fewer than 3 other nodes)."""
    mask = pair_mask(image_index)
    l1 = ((student.detach() - teacher.detach()).abs() * mask).sum(1)
    rho = [spearman(student[i][mask[i]], teacher[i][mask[i]]) for i in range(len(mask))]
    return l1, rho


def box_mask(boxes: list[torch.Tensor], shape: tuple[int, int, int], stride: int) -> torch.Tensor:
    """B x h x w: True at the feature pixels (of the given stride) whose centre lies inside a box of their image."""
    b, h, w = shape
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) * stride
    mask = torch.zeros(b, h, w, dtype=torch.bool)
    for i, image_boxes in enumerate(boxes):
        for x1, y1, x2, y2 in image_boxes.detach().cpu().tolist():
            inside_y = (ys >= y1) & (ys <= y2)
            inside_x = (xs >= x1) & (xs <= x2)
            mask[i] |= inside_y[:, None] & inside_x[None, :]
    return mask


def node_purity(projection: torch.Tensor, inside: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Graph nodes of a unit, from its projection P (B x M x h x w) and a B x h x w mask of the pixels inside
    ground-truth boxes: each node's share of its (softmax-over-nodes) assigned pixel mass that lies inside boxes
    (its purity, M values), and the mean entropy of the pixels' node assignment over log M (1: every pixel spread
    evenly over the nodes, 0: each pixel in one node)."""
    assignment = torch.softmax(projection.detach().double(), dim=1)  # B x M x h x w
    mass = assignment.sum(dim=(0, 2, 3))
    inside_mass = (assignment * inside[:, None].to(assignment)).sum(dim=(0, 2, 3))
    purity = inside_mass / mass.clamp_min(1e-12)
    entropy = -(assignment * assignment.clamp_min(1e-30).log()).sum(1)
    m = projection.shape[1]
    return purity, float(entropy.mean() / math.log(m)) if m > 1 else 0.0
