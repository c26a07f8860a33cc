"""Figures of the pixel relations: feature vs relation heatmaps per model, the graph projection of one unit, and
the foreground contrast over the test split."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, NullFormatter

from drkd_viz.analysis.graph import GraphView, assignment_map, node_map
from drkd_viz.analysis.pixel import PixelMaps
from drkd_viz.viz.common import (
    draw_boxes,
    image_array,
    new_figure,
    no_data,
    overlay,
    role_color,
    role_title,
    show_image,
    solid,
)

MAP_TITLES = {"feature": "FPN feature x", "relation": "relation feature G(x)"}


def _contrast_text(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "fg/bg contrast: n/a"
    return f"fg/bg contrast {value:.2f}" if math.isfinite(value) else "fg/bg contrast: ∞"


def plot_pixel_maps(
    image: torch.Tensor | np.ndarray,
    maps: dict[str, PixelMaps],
    boxes: np.ndarray | torch.Tensor | None,
    opacity: float = 0.5,
) -> Figure:
    """Columns: the models of ``maps`` side by side; rows: the plain FPN feature x and the relation feature G(x),
    as heatmaps over the image at ``opacity``, ground-truth boxes outlined, each titled with its contrast."""
    roles = list(maps)
    if not roles:
        fig = new_figure(6.0, 2.0)
        no_data(fig.subplots(), "no model picked")
        return fig
    h, w = image_array(image).shape[:2]
    panel = 11.0 / max(len(roles), 1)
    # a DRKD run without graph units has no relation feature for any model: its row is left out
    kinds = ("feature", "relation") if any(m.relation is not None for m in maps.values()) else ("feature",)
    fig = new_figure(panel * len(roles) + 1.0, len(kinds) * panel * h / w + 1.0)
    axes = fig.subplots(len(kinds), len(roles), squeeze=False)
    level = next(iter(maps.values())).level
    mappable = None
    for col, role in enumerate(roles):
        for row, kind in enumerate(kinds):
            ax = axes[row, col]
            heat = getattr(maps[role], kind)
            if heat is None:
                show_image(ax, image)
                no_data(ax, "no graph-reasoning unit")
                continue
            mappable = overlay(ax, image, heat, opacity)
            draw_boxes(ax, boxes, color="white", linewidth=0.9)
            ax.set_title(_contrast_text(getattr(maps[role], f"{kind}_contrast")), fontsize=9)
            if row == 0:
                ax.set_title(f"{role_title(role)}\n" + ax.get_title(), fontsize=10, color=role_color(role))
            if col == 0:
                ax.set_ylabel(f"{MAP_TITLES[kind]} ({level})", fontsize=10)
    if mappable is not None:
        bar = fig.colorbar(solid(mappable), ax=axes, shrink=0.8, pad=0.01)
        bar.set_label("energy: L2 norm over channels / max")
    fig.suptitle(
        f"Where the features at {level} put their energy (white boxes: ground truth; "
        "contrast = mean inside boxes / mean outside, > 1 focuses on objects)",
        fontsize=10,
    )
    return fig


def _node_colormap(nodes: int) -> ListedColormap:
    """Distinct colours for node labels: tab20, tab20b and tab20c give 60; beyond that they repeat."""
    from matplotlib import colormaps

    colors = [c for name in ("tab20", "tab20b", "tab20c") for c in colormaps[name].colors]
    return ListedColormap([colors[i % len(colors)] for i in range(nodes)])


def _mark_node(ax, node: int, size: int, color: str = "black") -> None:
    """Outline row and column ``node`` of an M x M matrix panel."""
    ax.add_patch(Rectangle((-0.5, node - 0.5), size, 1, fill=False, edgecolor=color, linewidth=1.2))
    ax.add_patch(Rectangle((node - 0.5, -0.5), 1, size, fill=False, edgecolor=color, linewidth=1.2))


def plot_graph_view(image: torch.Tensor | np.ndarray, view: GraphView, node: int) -> Figure:
    """Four panels for one graph-reasoning unit: the pixels voting into ``node``, the arg-max node of each pixel,
    the node-to-node affinity and the learned node-mixing matrix (``node``'s row and column outlined)."""
    votes = node_map(view, node)
    share = view.node_shares()[node]
    fig = new_figure(11.0, 9.6)
    (ax_vote, ax_assign), (ax_aff, ax_mix) = fig.subplots(2, 2)
    limit = float(np.abs(votes).max()) or 1.0
    show_image(ax_vote, image, dim=0.3)
    shown = ax_vote.imshow(votes, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.65)
    ax_vote.set_title(f"projection P[{node}]: how strongly each pixel votes into node {node}", fontsize=10)
    fig.colorbar(solid(shown), ax=ax_vote, shrink=0.85).set_label("vote (signed; red: positive)")

    labels = assignment_map(view)
    show_image(ax_assign, image)
    cmap = _node_colormap(view.nodes)
    shown = ax_assign.imshow(labels, cmap=cmap, vmin=-0.5, vmax=view.nodes - 0.5, alpha=0.55, interpolation="nearest")
    if (labels == node).any() and not (labels == node).all():
        ax_assign.contour(labels == node, levels=[0.5], colors="black", linewidths=1.5)
    ax_assign.set_title(f"arg-max node of each pixel (node {node} outlined: {share:.1%} of pixels)", fontsize=10)
    bar = fig.colorbar(solid(shown), ax=ax_assign, shrink=0.85)
    bar.set_label("graph node")
    bar.set_ticks(np.linspace(0, view.nodes - 1, min(view.nodes, 9)).round().astype(int))

    shown = ax_aff.imshow(view.affinity, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    _mark_node(ax_aff, node, view.nodes)
    ax_aff.set_title("node affinity: cosine similarity of node states V", fontsize=10)
    ax_aff.set_xlabel("node")
    ax_aff.set_ylabel("node")
    fig.colorbar(shown, ax=ax_aff, shrink=0.85).set_label("cosine similarity")

    limit = float(np.abs(view.mixing).max()) or 1.0
    shown = ax_mix.imshow(view.mixing, cmap="PuOr_r", vmin=-limit, vmax=limit, interpolation="nearest")
    _mark_node(ax_mix, node, view.nodes)
    ax_mix.set_title("learned node mixing A_g (the graph convolution across nodes)", fontsize=10)
    ax_mix.set_xlabel("input node")
    ax_mix.set_ylabel("output node")
    fig.colorbar(shown, ax=ax_mix, shrink=0.85).set_label("weight")
    fig.suptitle(
        f"Graph reasoning unit of the {role_title(view.role)} at {view.level}: "
        f"{view.nodes} nodes, node {node} selected",
        fontsize=11,
    )
    return fig


def plot_contrast_summary(df: pd.DataFrame) -> Figure:
    """Box plots of the foreground contrast per model, plain feature beside relation feature (log scale, 1 = no
    focus on objects), with each box's median written above it."""
    fig = new_figure(10.0, 4.6)
    ax = fig.subplots()
    data = df[np.isfinite(df["contrast"].astype(float))] if len(df) else df
    if data.empty:
        no_data(ax, "no finite contrast values (no images with boxes?)")
        return fig
    roles = list(dict.fromkeys(data["role"]))
    kinds = [k for k in ("feature", "relation") if k in set(data["map"])]
    width = 0.8 / len(kinds)
    for i, role in enumerate(roles):
        for j, kind in enumerate(kinds):
            values = data[(data["role"] == role) & (data["map"] == kind)]["contrast"].to_numpy(float)
            if not len(values):
                continue
            pos = i + (j - (len(kinds) - 1) / 2) * width
            box = ax.boxplot(values, positions=[pos], widths=width * 0.85, patch_artist=True, showfliers=False)
            box["boxes"][0].set(facecolor=role_color(role), alpha=0.35 if kind == "feature" else 0.85)
            box["medians"][0].set(color="black")
            jitter = np.random.default_rng(i * 2 + j).uniform(-width * 0.25, width * 0.25, len(values))
            ax.scatter(pos + jitter, values, s=7, color="black", alpha=0.4, zorder=3)
            ax.annotate(
                f"{np.median(values):.2f}",
                (pos, np.max(values)),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    low, high = ax.get_ylim()
    # within a decade the log axis has no major tick to read: label the minor ones (0.9, 1.1, …) instead
    ax.yaxis.set_minor_formatter(plain if high / low < 10 else NullFormatter())
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(roles)), [role_title(r) for r in roles])
    ax.set_ylabel("fg/bg contrast (mean inside boxes / outside)")
    n_images = data["image_id"].nunique()
    level = ", ".join(map(str, dict.fromkeys(data["level"]))) if "level" in data else "?"
    ax.set_title(f"Foreground contrast at {level} over {n_images} test images (medians written above the boxes)")
    handles = [
        Patch(facecolor="grey", alpha=0.35, label=MAP_TITLES["feature"]),
        Patch(facecolor="grey", alpha=0.85, label=MAP_TITLES["relation"]),
        Line2D([], [], color="grey", linestyle="--", label="1 = no focus on objects"),
    ]
    ax.legend(handles=handles, loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3, which="both")
    return fig
