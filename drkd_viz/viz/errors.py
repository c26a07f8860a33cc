"""Figures of the error analysis: every model's boxes on the same test images, coloured by what they are
(a true positive or one of TIDE's error types), with the objects found and missed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from drkd_viz.analysis.models import image_and_boxes
from drkd_viz.data.coco import CocoDetection
from drkd_viz.tide import ERROR_LABELS, ErrorBreakdown
from drkd_viz.viz.common import new_figure, role_title, show_image

OUTCOME_COLORS: dict[str, str] = {
    "tp": "#ffe119",  # a detection that found its object
    "cls": "#f58231",
    "loc": "#42d4f4",
    "both": "#911eb4",
    "dupe": "#a9a9a9",
    "bkg": "#e6194b",
}
FOUND, MISSED = "#3cb44b", "#f032e6"


def _panel(ax, image, image_id: int, result: ErrorBreakdown, score_threshold: float, title: str) -> None:
    show_image(ax, image, dim=0.3)
    objects = result.objects[result.objects["image_id"] == image_id]
    dets = result.detections[
        (result.detections["image_id"] == image_id) & (result.detections["score"] >= score_threshold)
    ]
    found_ids = set(dets.loc[dets["outcome"] == "tp", "target"])
    for obj in objects.itertuples():
        x, y, w, h = obj.bbox
        hit = obj.ann_id in found_ids
        ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=FOUND if hit else MISSED, linewidth=1.8,
                               linestyle="-" if hit else "--"))  # fmt: skip
    for det in dets[dets["outcome"] != "ignored"].itertuples():
        x, y, w, h = det.bbox
        color = OUTCOME_COLORS[det.outcome]
        ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=color, linewidth=0.9))
        label = f"{det.score:.2f}" if det.outcome == "tp" else f"{det.outcome} {det.score:.2f}"
        ax.text(x, y, label, color=color, fontsize=5, va="bottom")
    errors = dets[~dets["outcome"].isin(["tp", "ignored"])]
    ax.set_title(f"{title}\n{len(found_ids)}/{len(objects)} found, {len(errors)} false positives", fontsize=8)


def plot_image_errors(
    dataset: CocoDetection,
    changes: pd.DataFrame,
    results: dict[str, ErrorBreakdown],
    score_threshold: float = 0.5,
    limit: int = 3,
    title: str = "",
) -> Figure:
    """One row per image of ``changes`` (the first ``limit``; :func:`image_changes`), one panel per model of
    ``results``: objects found (green) or missed (magenta, dashed), and every detection scoring ≥
    ``score_threshold`` coloured by its outcome (yellow: true positive; then TIDE's types)."""

    shown = changes.head(limit)
    roles: Sequence[str] = list(results)
    rows = max(len(shown), 1)
    fig = new_figure(3.0 * len(roles), 3.2 * rows + 0.6)
    axes = np.array(fig.subplots(rows, len(roles), squeeze=False))
    if shown.empty:
        for ax in axes.flat:
            ax.axis("off")
        axes[0, 0].text(0, 0.5, "no image differs at these settings", fontsize=9)
        return fig
    for r, change in enumerate(shown.itertuples()):
        image, _, _ = image_and_boxes(dataset, dataset.ids.index(int(change.image_id)))
        for c, role in enumerate(roles):
            head = f"image {change.image_id} · {role_title(role)}"
            _panel(axes[r, c], image, int(change.image_id), results[role], score_threshold, head)
        axes[r, 0].set_ylabel(
            f"vs baseline: {change.found} found, {change.lost} lost\n"
            f"false positives: {change.fp_added} added, {change.fp_removed} removed",
            fontsize=8,
        )
    handles = [
        Line2D([], [], color=FOUND, linewidth=1.8, label="object found"),
        Line2D([], [], color=MISSED, linewidth=1.8, linestyle="--", label="object missed"),
        *(
            Line2D([], [], color=color, linewidth=1.2, label="true positive" if k == "tp" else ERROR_LABELS[k])
            for k, color in OUTCOME_COLORS.items()
        ),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(title or f"Detections scoring ≥ {score_threshold:.2f}, by outcome (IoU 0.5)", fontsize=9)
    return fig
