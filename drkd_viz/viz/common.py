"""Pieces every figure shares: images as arrays, boxes with numbers, overlays, role colours, PNG bytes.

Figures are built as ``matplotlib.figure.Figure`` objects (never through pyplot), so nothing depends on a global
current figure or an interactive backend: they render headless and in Streamlit alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from drkd_viz.analysis.models import ROLE_TITLES
from drkd_viz.utils.figures import figure_png, new_figure  # noqa: F401  (the figures' own API)

ROLE_COLORS: dict[str, str] = {
    "teacher": "#444444",
    "baseline": "#1f77b4",
    "feature_imitation": "#ff7f0e",
    "pkd": "#2ca02c",
    "drkd": "#d62728",
}
SIZE_COLORS: dict[str, str] = {"small": "#e6194b", "medium": "#f58231", "large": "#4363d8"}
SIZE_ORDER: tuple[str, ...] = ("small", "medium", "large")


def role_title(role: str) -> str:
    return ROLE_TITLES.get(role, role)


def role_color(role: str) -> str:
    return ROLE_COLORS.get(role, "#2ca02c")


def image_array(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A 3 x H x W tensor in [0, 1] (or an H x W x 3 array) as an H x W x 3 float array for imshow."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().permute(1, 2, 0).numpy()
    return np.clip(np.asarray(image, dtype=np.float32), 0, 1)


def show_image(ax: Axes, image: torch.Tensor | np.ndarray, dim: float = 0.0) -> None:
    """The image on ``ax`` without ticks; ``dim`` in [0, 1) greys it so overlays and boxes stand out."""
    array = image_array(image)
    if dim:
        array = array * (1 - dim) + 0.5 * dim
    ax.imshow(array, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def overlay(
    ax: Axes,
    image: torch.Tensor | np.ndarray,
    heatmap: np.ndarray,
    opacity: float = 0.5,
    cmap: str = "magma",  # perceptually uniform (jet invents edges where there are none)
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> AxesImage:
    """The image with ``heatmap`` (H x W, same size) drawn over it at ``opacity`` (0: image only, 1: map only).
    Returns the heatmap's AxesImage for a colour bar."""
    show_image(ax, image)
    return ax.imshow(heatmap, cmap=cmap, vmin=vmin, vmax=vmax, alpha=float(np.clip(opacity, 0, 1)))


def solid(image: AxesImage) -> ScalarMappable:
    """A colour-bar source with ``image``'s colour map and scale but no transparency (an overlay's own
    alpha would wash the colour bar out)."""
    return ScalarMappable(norm=image.norm, cmap=image.get_cmap())


def draw_boxes(
    ax: Axes,
    boxes: np.ndarray | torch.Tensor | None,
    labels: Sequence[str] | None = None,
    color: str | Sequence[str] = "white",
    linewidth: float = 1.2,
    fontsize: float = 8,
) -> None:
    """Outline ``boxes`` (N x 4, x1 y1 x2 y2) on ``ax`` (after the image is shown); ``labels[k]`` is written on
    a patch of the box's colour above box k's top-left corner (below its bottom-left one for boxes at the image's
    top edge), so it stays readable on any image and never hides a small box. ``color``: one or one per box."""
    boxes = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    colors = [color] * len(boxes) if isinstance(color, str) else list(color)
    top, bottom = sorted(ax.get_ylim())
    room = 0.05 * (bottom - top)  # about one label's height on a figure-sized panel
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colors[k], linewidth=linewidth))
        if labels is not None:
            above = y1 - top > room
            ax.text(
                x1,
                y1 if above else y2,
                labels[k],
                color="white",
                fontsize=fontsize,
                ha="left",
                va="bottom" if above else "top",
                bbox={"boxstyle": "square,pad=0.1", "facecolor": colors[k], "edgecolor": "none", "alpha": 0.85},
                clip_on=True,
            )


def no_data(ax: Axes, message: str) -> None:
    """An empty panel that says why it is empty."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=9, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
