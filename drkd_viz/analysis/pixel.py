"""Pixel relations (the paper's Fig. 1, done better): where the plain FPN feature x and the relation feature G(x)
of the graph-reasoning unit put their energy, for the teacher and the students, and how much of it falls on the
objects.

    maps = pixel_maps(models, image, boxes, "P2")      # one forward per model
    maps["drkd"].relation                               # H x W in [0, 1], aligned with the image
    maps["drkd"].relation_contrast                      # mean inside the ground-truth boxes / mean outside

The heatmap of a C x h x w feature is its per-pixel L2 norm over channels (the paper sums channels and clips at 0,
which hides negative activations; the norm counts every channel's energy whatever its sign), upsampled bilinearly
to the image and divided by its maximum. Dividing by the maximum keeps 0 meaning "no energy", so the contrast
(a ratio of means) is a property of the feature, not of the scaling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from drkd_viz.analysis.models import ModelSet, image_and_boxes
from drkd_viz.data.coco import CocoDetection
from drkd_viz.distill.relations import cosine_matrix
from drkd_viz.errors import UserError


def upsample(values: torch.Tensor, size: tuple[int, int], valid: tuple[float, float] | None = None) -> torch.Tensor:
    """Bilinear resize of ``values`` (... x h x w) so that its first ``valid`` (rows, columns) cover an image of
    ``size`` (H, W) exactly (default: all of it), cropped to that image."""
    h, w = values.shape[-2:]
    vh, vw = valid or (h, w)
    full = (max(round(size[0] * h / vh), size[0]), max(round(size[1] * w / vw), size[1]))
    lead = values.shape[:-2]
    out = F.interpolate(values.reshape(1, -1, h, w).float(), size=full, mode="bilinear", align_corners=False)
    return out[0, :, : size[0], : size[1]].reshape(*lead, size[0], size[1])


def energy_map(feature: torch.Tensor, size: tuple[int, int], valid: tuple[float, float] | None = None) -> np.ndarray:
    """C x h x w feature -> H x W heatmap in [0, 1]: per-pixel L2 norm over channels, bilinearly upsampled to the
    image ``size`` (H, W) and divided by its maximum (an all-zero feature gives zeros). ``valid``: see
    :func:`upsample`."""
    norm = feature.detach().float().pow(2).sum(0).sqrt()
    heat = upsample(norm, size, valid).clamp_min(0)
    peak = float(heat.max()) if heat.numel() else 0.0
    return (heat / peak).numpy() if peak > 0 else np.zeros(size, dtype=np.float32)


def box_mask(shape: tuple[int, int], boxes: np.ndarray | torch.Tensor) -> np.ndarray:
    """H x W boolean mask of the pixels whose centre lies inside any of ``boxes`` (N x 4, x1 y1 x2 y2); a box
    thinner than a pixel still marks the pixel under its centre."""
    mask = np.zeros(shape, dtype=bool)
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        # pixel c has its centre at c + 0.5: inside when x1 <= c + 0.5 <= x2
        c0, r0 = max(math.ceil(x1 - 0.5), 0), max(math.ceil(y1 - 0.5), 0)
        c1, r1 = max(math.floor(x2 - 0.5) + 1, c0 + 1), max(math.floor(y2 - 0.5) + 1, r0 + 1)
        mask[r0 : min(r1, shape[0]), c0 : min(c1, shape[1])] = True
    return mask


def foreground_contrast(heatmap: np.ndarray, boxes: np.ndarray | torch.Tensor) -> float:
    """Mean of ``heatmap`` (H x W) inside the ground-truth ``boxes`` divided by its mean outside them: above 1 the
    map focuses on the objects. NaN when there is no box or no background; inf when the background is all zero."""
    mask = box_mask(heatmap.shape, boxes)
    if not mask.any() or mask.all():
        return float("nan")
    inside, outside = float(heatmap[mask].mean()), float(heatmap[~mask].mean())
    if outside == 0:
        return float("inf") if inside > 0 else float("nan")
    return inside / outside


@dataclass
class PixelMaps:
    """Heatmaps of one model at one level, aligned with the image (H x W, in [0, 1])."""

    role: str
    level: str
    feature: np.ndarray  # the plain FPN feature x
    relation: np.ndarray | None  # the relation feature G(x); None without a graph-reasoning unit
    feature_contrast: float  # foreground_contrast of each map (NaN without boxes)
    relation_contrast: float | None


def pixel_maps(
    models: ModelSet,
    image: torch.Tensor,
    boxes: np.ndarray | torch.Tensor | None,
    level: str,
    roles: Sequence[str] | None = None,
) -> dict[str, PixelMaps]:
    """Feature and relation heatmaps of ``level`` for each role (default: teacher, baseline, DRKD student), one
    backbone forward per model. ``boxes`` (N x 4, image coordinates) only serve the contrasts (None or empty for
    an image without ground truth: the contrasts are NaN)."""
    models.check_level(level, "pixel")
    boxes = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = {}
    for role in models.select(roles):
        feats = models.features(role, image)
        x, valid = feats.features[level], feats.valid(level)
        units = models.units[role].pixel
        feature = energy_map(feats.crop(x[0], level), feats.image_size, valid)
        relation = None
        if level in units:  # a DRKD run without L_PR has no graph unit: the plain feature only
            with torch.no_grad():
                g = units[level](x)  # on the padded map, as in training; cropped afterwards
            relation = energy_map(feats.crop(g[0], level), feats.image_size, valid)
        out[role] = PixelMaps(
            role,
            level,
            feature,
            relation,
            foreground_contrast(feature, boxes),
            None if relation is None else foreground_contrast(relation, boxes),
        )
    return out


@dataclass
class AffinityMaps:
    """The global pixel relation of one image at one level (paper Fig. 1, parameter-free): each model's feature
    averaged onto one grid of cells shared by every model, channels centred over the cells, and the cosine between
    every pair of cells. Row p of ``affinity[role]`` is how that model's features relate cell p to the image."""

    level: str
    grid: tuple[int, int]  # (rows, columns) of cells over the image
    affinity: dict[str, np.ndarray]  # role -> P x P cosine in [-1, 1], P = rows * columns, cells row-major
    boxes: np.ndarray  # N x 4 ground truth (x1, y1, x2, y2) in cell units: what the picker draws


def affinity_grid(image_size: tuple[int, int], cells: int) -> tuple[int, int]:
    """(rows, columns) with ``cells`` along the image's longer side and the image's aspect ratio."""
    h, w = image_size
    if h >= w:
        return cells, max(1, round(cells * w / h))
    return max(1, round(cells * h / w)), cells


def affinity_maps(
    models: ModelSet,
    image: torch.Tensor,
    level: str,
    boxes: np.ndarray | torch.Tensor | None = None,
    roles: Sequence[str] | None = None,
    cells: int = 24,
) -> AffinityMaps:
    """Pixel affinities of ``level`` for each role on a grid of ``cells`` along the image's longer side (the
    detectors' own resize and padding undone, so every model's grid covers the same pixels). One backbone forward
    per model. ``boxes``: ground truth in image coordinates, moved to cell units for display."""
    if level not in models.levels:
        raise UserError(f"unknown FPN level {level!r}; the detectors have {list(models.levels)}")
    if cells < 2:
        raise UserError(f"the affinity grid needs at least 2 cells a side, got {cells}")
    size = (int(image.shape[-2]), int(image.shape[-1]))
    grid = affinity_grid(size, cells)
    affinity = {}
    for role in models.select(roles):
        feats = models.features(role, image)
        x = feats.crop(feats.features[level][0], level).float()
        pooled = F.adaptive_avg_pool2d(x[None], grid)[0].flatten(1).T  # P x C
        affinity[role] = cosine_matrix(pooled - pooled.mean(0, keepdim=True)).double().numpy()
    boxes_np = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scale = np.array([grid[1] / size[1], grid[0] / size[0]] * 2)
    return AffinityMaps(level, grid, affinity, boxes_np * scale)


def contrast_summary(
    models: ModelSet,
    dataset: CocoDetection,
    level: str,
    max_images: int = 50,
    roles: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Foreground contrast over the first ``max_images`` images of ``dataset`` that have boxes: one row per
    (image, role, map) with columns ``image_id``, ``index``, ``n_instances``, ``level``, ``role``, ``map`` ("feature" or
    "relation") and ``contrast``."""
    rows, used = [], 0
    for index in range(len(dataset)):
        if used >= max_images:
            break
        image, boxes, _ = image_and_boxes(dataset, index)
        if len(boxes) == 0:
            continue
        used += 1
        for role, maps in pixel_maps(models, image, boxes, level, roles).items():
            common = {
                "image_id": dataset.ids[index],
                "index": index,
                "n_instances": len(boxes),
                "level": level,
                "role": role,
            }
            rows.append({**common, "map": "feature", "contrast": maps.feature_contrast})
            if maps.relation is not None:
                rows.append({**common, "map": "relation", "contrast": maps.relation_contrast})
    columns = ["image_id", "index", "n_instances", "level", "role", "map", "contrast"]
    return pd.DataFrame(rows, columns=columns)
