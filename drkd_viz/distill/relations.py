"""Parameter-free relations: how a detector's own features relate its instances and its pixels, with nothing
trained in between. A teacher-side relation of this kind is anchored to the teacher's features: no optimiser can
move it towards the student, and it can be measured (``relation_metrics``) before anyone distils with it.

* :func:`instance_relation` — rows ``A_ij = softmax_{j≠i}(cos(r_i, r_j) / τ)`` over the nodes of one image
  (the diagonal is left out: every vector is most similar to itself, which says nothing);
* :func:`instance_distances` — pairwise distances ``‖r_i − r_j‖`` divided by their mean within the image
  (RKD's distance relation), so that the relation does not depend on the features' scale;
* :func:`pixel_affinity` — each level pooled to a small grid, each channel centred over the grid, and the
  cosine between every pair of grid cells (the paper's Fig. 1: which pixels a pixel relates to).

Each of them depends on the features only through inner products of centred vectors, so rotating the channels by
any orthogonal matrix leaves it unchanged (``controls.rotate_channels``); an imitation target does change. Centring
commutes with a rotation, dividing each channel by its standard deviation would not: that is why the pixel affinity
centres and does not standardise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# a masked logit: exp() underflows to exactly 0 in float32 and float16, yet stays finite so that 0·(−big) = 0
# (an −inf would give NaN gradients through KL's 0·log 0)
MASKED = -1.0e4


def pair_mask(image_index: torch.Tensor) -> torch.Tensor:
    """K x K: True for the ordered pairs (i, j), i ≠ j, of nodes of the same image."""
    same = image_index[:, None] == image_index[None, :]
    return same & ~torch.eye(len(image_index), dtype=torch.bool, device=image_index.device)


def cosine_matrix(vectors: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(vectors, dim=-1, eps=1e-8)
    return unit @ unit.transpose(-1, -2)


def relation_logits(vectors: torch.Tensor, image_index: torch.Tensor, temperature: float) -> torch.Tensor:
    """cos(r_i, r_j) / τ on the pairs of :func:`pair_mask`, :data:`MASKED` elsewhere (K x K)."""
    return (cosine_matrix(vectors) / temperature).masked_fill(~pair_mask(image_index), MASKED)


def instance_relation(vectors: torch.Tensor, image_index: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """A: K x K, row i the softmax over the other nodes of i's image of cos(r_i, r_j) / τ; zero elsewhere.
    Every image needs at least 2 nodes (a row with nothing to relate to would be all zero)."""
    return torch.softmax(relation_logits(vectors, image_index, temperature), dim=1)


def instance_distances(vectors: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
    """K x K: ‖r_i − r_j‖ over the mean distance of the image's pairs (i ≠ j), 0 outside the pairs."""
    mask = pair_mask(image_index)
    diff = vectors[:, None, :] - vectors[None, :, :]
    # √ with a floor: identical vectors (distance 0) keep a finite gradient
    dist = diff.pow(2).sum(-1).clamp_min(1e-12).sqrt() * mask
    groups = int(image_index.max()) + 1 if len(image_index) else 0
    per_image = torch.zeros(groups, dtype=dist.dtype, device=dist.device).index_add(0, image_index, dist.sum(1))
    pairs = torch.zeros(groups, dtype=dist.dtype, device=dist.device).index_add(0, image_index, mask.sum(1).to(dist))
    mean = (per_image / pairs.clamp_min(1))[image_index]
    return dist / mean.clamp_min(1e-12)[:, None]


def pooled_grid(feature: torch.Tensor, grid: int) -> torch.Tensor:
    """B x C x h x w -> B x P x C: the feature averaged to at most ``grid`` x ``grid`` cells (never upsampled),
    each channel centred over the cells of its image."""
    h, w = feature.shape[-2:]
    cells = F.adaptive_avg_pool2d(feature, (min(grid, h), min(grid, w))).flatten(2).transpose(1, 2)
    return cells - cells.mean(dim=1, keepdim=True)


def pixel_affinity(feature: torch.Tensor, grid: int = 12) -> torch.Tensor:
    """B x P x P: cosine between the centred feature vectors of every pair of the P grid cells (values in
    [−1, 1]; row p is the global relation of cell p)."""
    return cosine_matrix(pooled_grid(feature, grid))


def permute_within_images(image_index: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A permutation of 0…K−1 that moves every node only to a position of its own image (a random order of the
    nodes of each image): ``r[perm]`` gives each node another node's vector of the same image."""
    perm = torch.arange(len(image_index), device=image_index.device)
    for image in torch.unique(image_index):
        where = (image_index == image).nonzero().flatten()
        shuffled = torch.randperm(len(where), generator=generator).to(where.device)
        perm[where] = where[shuffled]
    return perm
