"""Figures of where distillation helps: AP by size with the spread over seeds, precision–recall curves per size,
per-class gains, and the individual objects one student finds and the other misses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from drkd_viz.data.coco import CocoDetection
from drkd_viz.viz.common import new_figure, no_data, role_color, role_title, show_image

SIZES: tuple[str, ...] = ("all", "small", "medium", "large")
AP_NAMES: dict[str, str] = {"all": "AP", "small": "AP_S", "medium": "AP_M", "large": "AP_L"}
VALUE_BOX = {"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 0.8}
FOUND, MISSED, DETECTION = "#00c853", "#ff00ff", "#ffd600"


def _models(df: pd.DataFrame, models: Sequence[str] | None) -> list[str]:
    return list(dict.fromkeys(df["model"])) if models is None else list(models)


def plot_ap_by_size(df: pd.DataFrame, models: Sequence[str] | None = None) -> Figure:
    """Grouped bars of :func:`drkd_viz.analysis.small_objects.ap_by_size`: mean AP per size and model, error bars
    the 95 % interval over seeds (none with one seed), dots the individual seeds. ``models``: which to show, in
    that order (default: all of the report)."""
    models = _models(df, models)
    fig = new_figure(max(6.5, 1.2 + 0.55 * len(models) * len(SIZES)), 3.8)
    ax = fig.subplots()
    width = 0.8 / max(len(models), 1)
    seeds = int(df["n"].max()) if len(df) else 0
    for i, model in enumerate(models):
        part = df[df["model"] == model].set_index("size").reindex(list(SIZES))
        x = np.arange(len(SIZES)) + (i - (len(models) - 1) / 2) * width
        mean = part["mean"].to_numpy(float) * 100
        low = np.where(np.isnan(part["ci_low"].to_numpy(float)), np.nan, mean - part["ci_low"].to_numpy(float) * 100)
        high = np.where(np.isnan(part["ci_high"].to_numpy(float)), np.nan, part["ci_high"].to_numpy(float) * 100 - mean)
        ax.bar(x, np.nan_to_num(mean), width, color=role_color(model), label=role_title(model), alpha=0.85)
        if np.isfinite(low).any():
            ax.errorbar(x, mean, yerr=[low, high], fmt="none", ecolor="black", capsize=3, linewidth=1)
        for xi, values in zip(x, part["values"], strict=True):
            if isinstance(values, tuple) and len(values) > 1:
                ax.plot([xi] * len(values), np.asarray(values, float) * 100, "o", color="black", markersize=2.5)
        for xi, m in zip(x, mean, strict=True):  # at the bar's foot: clear of the error bars and seed dots
            ax.annotate("n/a" if np.isnan(m) else f"{m:.1f}", (xi, 0), xytext=(0, 3), textcoords="offset points",
                        ha="center", va="bottom", fontsize=6.5, bbox=VALUE_BOX)  # fmt: skip
    ax.set_xticks(np.arange(len(SIZES)), [f"{s}\n({AP_NAMES[s]})" for s in SIZES])
    ax.set_ylabel("box AP, IoU 0.50:0.95 (%)")
    spread = "error bars: 95 % interval, dots: seeds" if seeds > 1 else "one seed: no spread to show"
    ax.set_title(f"Test AP by object size (mean over {seeds} seed{'s' * (seeds != 1)}; {spread})", fontsize=10)
    ax.legend(fontsize=8, ncol=min(len(models), 4), loc="upper left")
    ax.margins(y=0.15)
    return fig


def plot_pr_curves(df: pd.DataFrame, area: str | None = "small") -> Figure:
    """Precision–recall curves of :func:`drkd_viz.analysis.small_objects.pr_curves` for one size (``area``), or
    one panel per size with ``area=None``. The legend gives each curve's mean precision, which is COCO's AP."""
    areas = list(SIZES) if area is None else [area]
    iou = df["iou"].iloc[0] if "iou" in df and len(df) else "0.50:0.95"
    fig = new_figure(max(5.2, 4.2 * len(areas)), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(areas), sharey=True))
    for ax, name in zip(axes, areas, strict=True):
        part = df[df["area"] == name]
        drawn = False
        for model in dict.fromkeys(part["model"]):
            curve = part[part["model"] == model]
            if curve["precision"].isna().all():
                continue
            ap = curve["precision"].mean() * 100
            ax.plot(curve["recall"], curve["precision"], color=role_color(model), linewidth=1.6,
                    label=f"{role_title(model)} ({AP_NAMES[name]} {ap:.1f} %)")  # fmt: skip
            drawn = True
        if not drawn:
            no_data(ax, f"no {name} objects in the test split")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_title(f"{name} objects" if name != "all" else "all sizes", fontsize=10)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("interpolated precision")
    fig.suptitle(f"Precision–recall on the test split\n(COCO: mean over classes and IoU {iou}, maxDets 100)",
                 fontsize=9.5)  # fmt: skip
    return fig


def plot_class_gains(df: pd.DataFrame) -> Figure:
    """Per-class AP of :func:`drkd_viz.analysis.small_objects.per_class_gains`: left the gain over the baseline
    (AP points, green up / red down), right the baseline, method and teacher AP of each class."""
    method = df["method"].iloc[0] if len(df) else "method"
    fig = new_figure(9.5, 0.5 + 0.38 * max(len(df), 4))
    left, right = fig.subplots(1, 2, sharey=True, width_ratios=[1, 1.3])
    y = np.arange(len(df))[::-1]
    gain = df["gain"].to_numpy(float) * 100
    left.barh(y, np.nan_to_num(gain), color=np.where(gain >= 0, "#2e7d32", "#c62828"))
    for yi, g in zip(y, gain, strict=True):
        left.text(0 if np.isnan(g) else g, yi, " n/a" if np.isnan(g) else f" {g:+.1f} ", va="center",
                  ha="left" if np.isnan(g) or g >= 0 else "right", fontsize=7)  # fmt: skip
    left.axvline(0, color="black", linewidth=0.8)
    left.set_yticks(y, df["class"])
    left.set_xlabel(f"AP gain of {role_title(method)} over the baseline (points)")
    left.margins(x=0.25)
    left.set_title("gain per class (sorted)", fontsize=10)
    for column, role, marker in (
        ("baseline_ap", "baseline", "o"),
        ("method_ap", method, "D"),
        ("teacher_ap", "teacher", "|"),
    ):
        right.plot(df[column].to_numpy(float) * 100, y, marker, color=role_color(role), label=role_title(role),
                   markersize=6 if marker != "|" else 12, linestyle="none")  # fmt: skip
    right.hlines(y, df["baseline_ap"] * 100, df["method_ap"] * 100, color="grey", linewidth=1)
    right.set_xlabel("AP, IoU 0.50:0.95, area all (%)")
    right.set_title("AP per class (mean over seeds)", fontsize=10)
    right.legend(fontsize=7, loc="lower right")
    right.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Per-class test AP: {role_title(method)} vs the baseline student", fontsize=11)
    return fig


def _crop(image: np.ndarray, bbox: tuple[float, ...], context: float = 2.0, minimum: int = 40) -> tuple:
    """A square window ``context`` times the object's larger side (at least ``minimum`` px) around it."""
    x, y, w, h = bbox
    side = max(minimum, context * max(w, h))
    cx, cy = x + w / 2, y + h / 2
    height, width = image.shape[:2]
    x0 = int(np.clip(cx - side / 2, 0, max(width - side, 0)))
    y0 = int(np.clip(cy - side / 2, 0, max(height - side, 0)))
    x1, y1 = int(min(width, x0 + side)), int(min(height, y0 + side))
    return image[y0:y1, x0:x1], x0, y0


def _rule(table: pd.DataFrame) -> str:
    """What "found" meant for this table (set by match_objects / found_vs_missed)."""
    iou, score = table.attrs.get("iou"), table.attrs.get("score_threshold")
    return "found: same-class detection" + ("" if iou is None else f", IoU ≥ {iou:g}, score ≥ {score:g}")


def _score(value: float) -> str:
    return "missed" if value is None or np.isnan(value) else f"{value:.2f}"


def plot_found_missed(dataset: CocoDetection, rows: pd.DataFrame, limit: int = 6) -> Figure:
    """Crops around the objects of :func:`drkd_viz.analysis.small_objects.found_vs_missed`: the first row of panels
    are objects the method finds and the reference misses, the second the reverse (counts in the row titles).
    Each crop is enlarged around the ground-truth box (green); its title gives the image, class and both scores."""
    score_cols = [c for c in rows.columns if c.endswith("_score")]  # method first, then reference
    a, b = (c[: -len("_score")] for c in score_cols)
    cases = [f"{a} found, {b} missed", f"{b} found, {a} missed"]  # both, even when one is empty: "none" is a result
    titles = [
        f"found by {role_title(a)},\nmissed by {role_title(b)}",
        f"found by {role_title(b)},\nmissed by {role_title(a)}",
    ]
    ids = {image_id: k for k, image_id in enumerate(dataset.ids)}
    fig = new_figure(1.9 * limit, 4.9)
    grid = fig.subplots(2, limit, squeeze=False)
    for r, case in enumerate(cases):
        part = rows[rows["case"] == case]
        grid[r, 0].set_ylabel(f"{titles[r]}\n({len(part)} objects)", fontsize=8)
        for c in range(limit):
            ax = grid[r, c]
            if c >= len(part):
                if c == 0:
                    no_data(ax, "none")
                else:
                    ax.axis("off")
                continue
            obj = part.iloc[c]
            pixels = np.asarray(dataset.load_image(ids[int(obj["image_id"])]), dtype=np.float32) / 255.0  # PIL: 0…255
            crop, x0, y0 = _crop(pixels, obj["bbox"])
            show_image(ax, crop)
            x, y, w, h = obj["bbox"]
            ax.add_patch(Rectangle((x - x0, y - y0), w, h, fill=False, edgecolor=FOUND, linewidth=1.5))
            scores = " · ".join(f"{col[: -len('_score')]} {_score(obj[col])}" for col in score_cols)
            teacher = obj.get("teacher_found")
            extra = "" if teacher is None else f"\nteacher {'found' if teacher else 'missed'}"
            ax.set_title(f"img {obj['image_id']} · {obj['category']}\n{scores}{extra}", fontsize=6.5)
    size = rows.attrs.get("size", "all")
    fig.suptitle(f"Test objects (size: {size}) found by exactly one of two models — {_rule(rows)}; crops enlarged, "
                 "green box = ground truth", fontsize=9)  # fmt: skip
    return fig


def plot_image_matches(
    image: torch.Tensor | np.ndarray,
    image_id: int,
    matches: dict[str, pd.DataFrame],
    detections: dict[str, pd.DataFrame] | None = None,
    size: str = "small",
    max_detections: int = 25,
) -> Figure:
    """One panel per model on the same image: its ``max_detections`` best detections (yellow, with scores) and
    the ground-truth objects of ``size`` it finds (green) or misses (magenta, dashed). ``matches``:
    :func:`match_objects` tables (all images; filtered to ``image_id`` here), ``detections``:
    :func:`image_detections` of this image per model."""
    roles = list(matches)
    fig = new_figure(3.6 * len(roles), 4.3)
    axes = np.atleast_1d(fig.subplots(1, len(roles)))
    for ax, role in zip(axes, roles, strict=True):
        show_image(ax, image, dim=0.25)
        table = matches[role]
        objects = table[(table["image_id"] == image_id) & ((table["size"] == size) if size != "all" else True)]
        shown = (detections or {}).get(role, pd.DataFrame(columns=["bbox", "score"])).head(max_detections)
        for det in shown.itertuples():
            x, y, w, h = det.bbox
            ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=DETECTION, linewidth=0.8))
            ax.text(x + w, y, f"{det.score:.2f}", color=DETECTION, fontsize=5.5, ha="right", va="bottom")
        for obj in objects.itertuples():
            x, y, w, h = obj.bbox
            ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=FOUND if obj.found else MISSED,
                                   linewidth=1.6, linestyle="-" if obj.found else "--"))  # fmt: skip
        found = int(objects["found"].sum())
        ax.set_title(f"{role_title(role)}\n{found} / {len(objects)} {size} objects found", fontsize=9)
    handles = [
        Line2D([], [], color=FOUND, linewidth=1.6, label=f"{size} object found"),
        Line2D([], [], color=MISSED, linewidth=1.6, linestyle="--", label=f"{size} object missed"),
        Line2D([], [], color=DETECTION, linewidth=0.8, label="detection (score)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    rule = _rule(next(iter(matches.values()))) if matches else ""
    fig.suptitle(f"Test image {image_id}: which {size} objects each model finds ({rule})", fontsize=9)
    return fig
