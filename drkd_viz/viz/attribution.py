"""Attribution maps of one box for several detectors side by side (rows: models, columns: methods)."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from drkd_viz.analysis.attribution import METHOD_TITLES
from drkd_viz.viz.common import draw_boxes, image_array, new_figure, no_data, role_color, role_title, show_image

# signed maps get a diverging colour map centred on 0, non-negative ones a sequential one
CMAPS: dict[str, str] = {"integrated_gradients": "RdBu_r", "saliency": "magma", "gradcam": "magma"}
SIGNED: frozenset[str] = frozenset({"integrated_gradients"})
LABEL_BOX = {"facecolor": "white", "alpha": 0.8, "edgecolor": "none"}


def _limit(maps: list[np.ndarray], signed: bool) -> float:
    """Colour-scale limit shared by a column: the 99.5th percentile of |value|, so that a handful of extreme
    pixels do not wash the rest of the map out (they saturate instead)."""
    values = np.concatenate([np.abs(m).ravel() for m in maps]) if maps else np.zeros(1)
    limit = float(np.percentile(values, 99.5)) if signed else float(np.percentile(values, 99.9))
    return limit if limit > 0 else float(values.max()) or 1.0


def _window(box: np.ndarray, context: float, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """x0, y0, x1, y1 of a square of ``context`` × the box's larger side (≥ 48 px) centred on it, inside the image."""
    height, width = size
    side = min(max(48.0, context * max(box[2] - box[0], box[3] - box[1])), width, height)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = float(np.clip(cx - side / 2, 0, width - side))
    y0 = float(np.clip(cy - side / 2, 0, height - side))
    return x0 - 0.5, y0 - 0.5, x0 + side - 0.5, y0 + side - 0.5


def plot_attributions(
    image: torch.Tensor | np.ndarray,
    maps: dict[str, dict[str, np.ndarray]],
    box: torch.Tensor | np.ndarray,
    scores: dict[str, float] | None = None,
    label_name: str | None = None,
    level: str | None = None,
    opacity: float = 0.6,
    context: float | None = None,
) -> Figure:
    """``maps[role][method]`` (H x W, from :func:`drkd_viz.analysis.attribution.attribute_models`) over the image,
    one row per model and one column per method, the box outlined in every panel. Each column shares one colour
    scale (one colour bar) across the models, so their maps compare directly: every model's score is a probability.
    ``scores``: the box score per model (row labels); ``label_name``: the class; ``level``: the Grad-CAM level;
    ``context``: zoom every panel to a square ``context`` times the box's larger side (at least 48 px) around it,
    for small boxes (None: the whole image)."""
    roles = list(maps)
    methods = list(dict.fromkeys(m for role in roles for m in maps[role]))
    fig = new_figure(0.6 + 3.0 * (len(methods) + 1), 0.9 + 2.75 * max(len(roles), 1))
    if not roles or not methods:
        no_data(fig.subplots(), "no attribution maps to show")
        return fig
    grid = fig.subplots(len(roles), len(methods) + 1, squeeze=False)
    box = np.asarray(box, dtype=np.float64).reshape(1, 4)
    window = None if context is None else _window(box[0], context, image_array(image).shape[:2])
    for r, role in enumerate(roles):
        ax = grid[r, 0]
        show_image(ax, image)
        draw_boxes(ax, box, color=role_color(role), linewidth=1.5)
        score = "" if scores is None or role not in scores else f"\nscore {scores[role]:.3g}"
        ax.set_ylabel(f"{role_title(role)}{score}", fontsize=9, color=role_color(role))
        if r == 0:
            ax.set_title("image and box", fontsize=9)
    for c, method in enumerate(methods, start=1):
        signed = method in SIGNED
        column = [maps[role][method] for role in roles if method in maps[role]]
        limit = _limit(column, signed)
        norm = Normalize(-limit, limit) if signed else Normalize(0, limit)
        image_handle = None
        for r, role in enumerate(roles):
            ax = grid[r, c]
            if method not in maps[role]:
                no_data(ax, f"no {method} map")
                continue
            show_image(ax, image, dim=0.5)
            heat = maps[role][method]
            # transparent where the map is ~0, so the image shows through around the evidence
            alpha = np.clip(np.abs(heat) / limit, 0, 1) * opacity
            image_handle = ax.imshow(heat, cmap=CMAPS.get(method, "viridis"), norm=norm, alpha=alpha)
            draw_boxes(ax, box, color="black", linewidth=1.0)
            if not signed and not np.any(heat > 0):
                ax.text(0.5, 0.03, "all zero: no positive evidence", transform=ax.transAxes, ha="center",
                        va="bottom", fontsize=7, bbox=LABEL_BOX)  # fmt: skip
            if r == 0:
                extra = f" on {level}" if method == "gradcam" and level else ""
                ax.set_title(METHOD_TITLES.get(method, method) + extra, fontsize=9)
        if image_handle is not None:
            bar = fig.colorbar(image_handle, ax=grid[:, c], location="bottom", shrink=0.85, pad=0.02)
            bar.set_label("attribution (+ raises the score)" if signed else "attribution (≥ 0)", fontsize=8)
            bar.ax.tick_params(labelsize=7)
            bar.formatter.set_powerlimits((-2, 3))
    if window is not None:
        for ax in grid.ravel():
            ax.set_xlim(window[0], window[2])
            ax.set_ylim(window[3], window[1])  # images: y grows downwards
    what = f"class {label_name!r}" if label_name else "the class"
    fig.suptitle(f"What makes each model score {what} in this box (shared colour scale per column)", fontsize=10)
    return fig
