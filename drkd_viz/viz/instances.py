"""Figures of the instance relations: the relation matrices of one image beside its numbered boxes, and how close
the students' matrices come to the teacher's over the test split, by object size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.colors import CenteredNorm, PowerNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from drkd_viz.analysis.instances import InstanceRelations, row_distances
from drkd_viz.viz.common import (
    SIZE_COLORS,
    SIZE_ORDER,
    draw_boxes,
    image_array,
    new_figure,
    no_data,
    role_color,
    role_title,
    show_image,
)

MAX_TICKS = 24  # more instances than this: label every k-th one so the numbers stay readable
HIGHLIGHT = "#ffd700"


def _index_ticks(ax: Axes, sizes: list[str], axis: str = "both") -> None:
    """Instance numbers on the matrix axes, coloured by size bucket (the same colours as the boxes)."""
    n = len(sizes)
    step = max(1, int(np.ceil(n / MAX_TICKS)))
    ticks = list(range(0, n, step))
    for name in ("x", "y") if axis == "both" else (axis,):
        getattr(ax, f"set_{name}ticks")(ticks, [str(k) for k in ticks], fontsize=7)
        for label, k in zip(getattr(ax, f"get_{name}ticklabels")(), ticks, strict=True):
            label.set_color(SIZE_COLORS[sizes[k]])
    ax.tick_params(length=2, pad=1)


def _mark_row(ax: Axes, row: int, n: int) -> None:
    ax.add_patch(Rectangle((-0.5, row - 0.5), n, 1, fill=False, edgecolor=HIGHLIGHT, linewidth=2))


def _size_legend(ax: Axes, sizes: list[str]) -> None:
    present = [s for s in SIZE_ORDER if s in sizes]
    handles = [Patch(facecolor=SIZE_COLORS[s], label=f"{s} ({sizes.count(s)})") for s in present]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3, fontsize=8, frameon=False)


def plot_relation_matrices(
    image: torch.Tensor | np.ndarray,
    relations: dict[str, InstanceRelations],
    highlight: int | None = None,
) -> Figure:
    """The image with its instances numbered by area (largest = 0) next to each model's relation matrix A (row k:
    how instance k attends to the others), the relation-filter weights w, each student's A minus the teacher's, and
    per instance the L1 distance of each student's row to the teacher's. ``highlight``: an instance to outline in
    every panel. Numbers and tick colours (size bucket) match between the boxes and the matrices."""
    roles = list(relations)
    if not roles:
        fig = new_figure(6.0, 2.0)
        no_data(fig.subplots(), "no model picked")
        return fig
    first = relations[roles[0]]
    n = len(first.order)
    students = [r for r in roles if r != "teacher"]
    compare = "teacher" in relations and bool(students)  # the third row: students against the teacher
    h, w = image_array(image).shape[:2]
    fig = new_figure(2.9 * (1 + len(roles)), 9.6 if compare else 6.6)
    if n == 0:
        ax = fig.subplots()
        show_image(ax, image)
        ax.set_title("no ground-truth instances in this image: no relation matrix", fontsize=10)
        return fig
    rows = [["image", *[f"A:{r}" for r in roles]], ["image", *[f"w:{r}" for r in roles]]]
    if compare:
        rows.append(["dist", "dist", *[f"D:{r}" for r in students]])
    axes = fig.subplot_mosaic(
        rows, height_ratios=[1, 1, 1][: len(rows)], width_ratios=[1.15 * w / h] + [1] * len(roles)
    )
    marked = highlight if highlight is not None and 0 <= highlight < n else None
    _plot_numbered_instances(axes["image"], image, first, marked)
    _plot_matrices(fig, axes, relations, first.sizes, marked)
    _plot_filters(fig, axes, relations, first.sizes)
    if compare:
        l1 = {r: row_distances(relations[r].matrix, relations["teacher"].matrix)[0] for r in students}
        _plot_differences(fig, axes, relations, l1, first.sizes, marked)
        _plot_row_distances(axes["dist"], l1, first.sizes, marked)
    fig.suptitle(f"Instance relations at {first.level}: relation matrices A (paper Fig. 2) and filters", fontsize=11)
    return fig


def _plot_numbered_instances(
    ax: Axes, image: torch.Tensor | np.ndarray, first: InstanceRelations, marked: int | None
) -> None:
    n, sizes = len(first.order), first.sizes
    show_image(ax, image)
    colors = [SIZE_COLORS[s] for s in sizes]
    draw_boxes(ax, first.boxes, labels=[str(k) for k in range(n)], color=colors, linewidth=1.3)
    if marked is not None:
        draw_boxes(ax, first.boxes[marked : marked + 1], color=HIGHLIGHT, linewidth=2.8)
    ax.set_title(f"{n} instances\nnumbered by area (0 = largest)", fontsize=10)
    _size_legend(ax, sizes)


def _plot_matrices(
    fig: Figure, axes: dict[str, Axes], relations: dict[str, InstanceRelations], sizes: list[str], marked: int | None
) -> None:
    """Each model's relation matrix A, on one colour scale."""
    # square-root scale: a near-uniform row (every entry ≈ 1/N) and a peaked one both stay readable
    scale = PowerNorm(0.5, vmin=0, vmax=max(float(r.matrix.max()) for r in relations.values()))
    for role, relation in relations.items():
        ax = axes[f"A:{role}"]
        shown = ax.imshow(relation.matrix, cmap="viridis", norm=scale, interpolation="nearest")
        ax.set_title(f"A, {role_title(role)}", fontsize=10, color=role_color(role))
        _index_ticks(ax, sizes)
        if marked is not None:
            _mark_row(ax, marked, len(sizes))
    fig.colorbar(shown, ax=[axes[f"A:{r}"] for r in relations], shrink=0.85, pad=0.01).set_label(
        "A_ij (row i sums to 1)"
    )


def _plot_filters(
    fig: Figure, axes: dict[str, Axes], relations: dict[str, InstanceRelations], sizes: list[str]
) -> None:
    """Each model's relation-filter weights w, on one scale centred on 1 (a model without a filter says so)."""
    filters = {r: relation.filter for r, relation in relations.items()}
    spread = max((float(np.abs(f - 1).max()) for f in filters.values() if f is not None), default=0.0)
    norm = CenteredNorm(vcenter=1.0, halfrange=max(spread, 1e-3))
    shown = None
    for role, weights in filters.items():
        ax = axes[f"w:{role}"]
        if weights is None:
            no_data(ax, "this module has no relation filter")
            continue
        shown = ax.imshow(weights, cmap="PiYG", norm=norm, interpolation="nearest")
        ax.set_title(f"relation filter w, {role_title(role)}", fontsize=10, color=role_color(role))
        _index_ticks(ax, sizes)
    if shown is not None:
        fig.colorbar(shown, ax=[axes[f"w:{r}"] for r in filters], shrink=0.85, pad=0.01).set_label(
            "w_ij (1: relation kept as is)"
        )


def _plot_differences(
    fig: Figure,
    axes: dict[str, Axes],
    relations: dict[str, InstanceRelations],
    l1: dict[str, np.ndarray],
    sizes: list[str],
    marked: int | None,
) -> None:
    """Each student's A minus the teacher's (``l1``: each student's row distances to the teacher, by role)."""
    teacher = relations["teacher"].matrix
    diffs = {r: relations[r].matrix - teacher for r in l1}
    limit = max(float(np.abs(d).max()) for d in diffs.values()) or 1e-3
    for role, diff in diffs.items():
        ax = axes[f"D:{role}"]
        shown = ax.imshow(diff, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(f"A {role_title(role)} − A teacher\nmean row L1 {l1[role].mean():.3f}", fontsize=10)
        _index_ticks(ax, sizes)
        if marked is not None:
            _mark_row(ax, marked, len(sizes))
    fig.colorbar(shown, ax=[axes[f"D:{r}"] for r in diffs], shrink=0.85, pad=0.01).set_label("student − teacher")


def _plot_row_distances(ax: Axes, l1: dict[str, np.ndarray], sizes: list[str], marked: int | None) -> None:
    """Per instance, the L1 distance of each student's row to the teacher's, as grouped bars."""
    n = len(sizes)
    width = 0.8 / len(l1)
    for j, (role, distances) in enumerate(l1.items()):
        pos = np.arange(n) + (j - (len(l1) - 1) / 2) * width
        ax.bar(pos, distances, width=width, color=role_color(role), label=role_title(role))
    if marked is not None:
        ax.axvspan(marked - 0.5, marked + 0.5, color=HIGHLIGHT, alpha=0.3, zorder=0)
    _index_ticks(ax, sizes, axis="x")
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xlabel("instance (colour: size)")
    ax.set_ylabel("L1 distance to teacher row")
    ax.set_title("each instance's row vs the teacher's (L1: 0 same, 2 disjoint)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _mean_ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its normal 95 % interval (0 for fewer than two values)."""
    mean = float(values.mean()) if len(values) else float("nan")
    half = 1.96 * float(values.std(ddof=1)) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, half


def plot_relation_summary(df: pd.DataFrame) -> Figure:
    """Per object size (and all together), the mean distance of each student's relation rows to the teacher's
    (L1 and KL, with 95 % intervals), and how often the DRKD student's row is closer than the baseline's."""
    paired = {"baseline", "drkd"} <= set(df["role"]) if len(df) else False
    fig = new_figure(12.0, 4.4)
    axes = fig.subplots(1, 3 if paired else 2)
    if df.empty:
        for ax in axes:
            no_data(ax, "nothing to summarise: no student picked, or no image with two or more instances")
        return fig
    groups = [s for s in SIZE_ORDER if s in set(df["size"])] + ["all"]
    roles = list(dict.fromkeys(df["role"]))
    width = 0.8 / len(roles)
    for ax, metric, label in (
        (axes[0], "l1", "L1 distance of a row to the teacher's (0…2)"),
        (axes[1], "kl", "KL(teacher ‖ student) of a row (nats)"),
    ):
        for j, role in enumerate(roles):
            sub = df[df["role"] == role]
            stats = [
                _mean_ci(sub[metric].to_numpy(float) if g == "all" else sub[sub["size"] == g][metric].to_numpy(float))
                for g in groups
            ]
            pos = np.arange(len(groups)) + (j - (len(roles) - 1) / 2) * width
            ax.bar(
                pos,
                [m for m, _ in stats],
                width=width,
                yerr=[e for _, e in stats],
                capsize=3,
                color=role_color(role),
                label=role_title(role),
            )
        counts = [len(df[(df["role"] == roles[0]) & ((df["size"] == g) | (g == "all"))]) for g in groups]
        ax.set_xticks(range(len(groups)), [f"{g}\n(n={c})" for g, c in zip(groups, counts, strict=True)])
        ax.set_ylabel(label)
        ax.set_title(f"{metric.upper()} to the teacher, lower is closer", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    if paired:
        ax = axes[2]
        keys = ["image_id", "instance"]
        both = df[df["role"] == "baseline"].merge(df[df["role"] == "drkd"], on=keys, suffixes=("_b", "_d"))
        shares = []
        for g in groups:
            sub = both if g == "all" else both[both["size_b"] == g]
            shares.append(float((sub["l1_d"] < sub["l1_b"]).mean()) if len(sub) else float("nan"))
        ax.bar(range(len(groups)), shares, color=role_color("drkd"), alpha=0.8)
        for i, s in enumerate(shares):
            ax.text(i, s + 0.02, f"{s:.0%}", ha="center", fontsize=9)
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="50 %: no difference")
        ax.set_ylim(0, 1.1)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_ylabel("share of instance rows")
        ax.set_title("rows where DRKD is closer than the baseline (L1)", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    n_images = df["image_id"].nunique()
    level = ", ".join(map(str, dict.fromkeys(df["level"]))) if "level" in df else "?"
    fig.suptitle(
        f"How close the students' relation matrices are to the teacher's at {level}, by object size "
        f"({n_images} test images; bars: mean with 95 % interval)",
        fontsize=11,
    )
    return fig


def plot_instances(
    image: torch.Tensor | np.ndarray,
    relation: InstanceRelations,
    class_names: dict[int, str] | list[str] | None = None,
    highlight: int | None = None,
    partner: int | None = None,
) -> Figure:
    """The image with its instances numbered in the matrix order (class, then size, when the relations were computed
    with labels), each box in its class's colour. ``highlight``: the instance of a picked row (gold, thick);
    ``partner``: the other instance of a picked cell (cyan, thick)."""
    from matplotlib import colormaps

    n = len(relation.order)
    h, w = image_array(image).shape[:2]
    fig = new_figure(3.6, 3.6 * h / w + 0.5)
    ax = fig.subplots()
    show_image(ax, image, dim=0.25)
    palette = colormaps["tab10"].colors
    if relation.labels is not None:
        colors = [palette[(int(label) - 1) % len(palette)] for label in relation.labels]
    else:
        colors = [SIZE_COLORS[s] for s in relation.sizes]
    draw_boxes(ax, relation.boxes, labels=[str(k) for k in range(n)], color=colors, linewidth=1.0, fontsize=7)
    for k, color in ((highlight, HIGHLIGHT), (partner, "#00e5ff")):
        if k is not None and 0 <= k < n:
            draw_boxes(ax, relation.boxes[k : k + 1], color=color, linewidth=3.0)
    title = f"{n} instances, numbered as in the matrices"
    if highlight is not None and 0 <= highlight < n:
        title += f"\ngold: #{highlight}" + (f", cyan: #{partner}" if partner is not None and 0 <= partner < n else "")
        if relation.labels is not None and class_names is not None:
            picked = [k for k in (highlight, partner) if k is not None and 0 <= k < n]
            title += " (" + ", ".join(class_names[int(relation.labels[k])] for k in picked) + ")"
    ax.set_title(title, fontsize=9)
    return fig
