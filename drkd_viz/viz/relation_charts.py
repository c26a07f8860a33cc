"""Interactive relation charts (Vega-Lite through Altair), the dashboard's and the notebooks' way to explore what
relations carry:

* :func:`relation_matrices_chart`: each model's instance relation matrix side by side on one colour scale,
  instances ordered by class then size with the class blocks outlined; hover a cell for both instances and the
  value, click a cell (selection ``SELECT_PAIR``) or an instance of the class strip (``SELECT_INSTANCE``);
* :func:`relation_metrics_chart`: the split-wide class-structure AUC and agreement with the teacher per model
  (and size), with intervals over seeds;
* :func:`controls_chart`: the controlled study's arms as gains over the baseline with their intervals.

The pixel-relation charts (the affinity explorer) are :mod:`drkd_viz.viz.pixel_charts`; :func:`selected` reads a
click of either module's charts.

Colours are perceptually uniform: viridis for values, a diverging red-blue for differences.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from drkd_viz.analysis.instances import InstanceRelations
from drkd_viz.viz.charts import _alt, _model_scale
from drkd_viz.viz.common import role_title

SELECT_PAIR = "relation_pair"  # a click on a matrix cell: fields role, row, col
SELECT_INSTANCE = "relation_instance"  # a click on the class strip: field row
SIZE_LETTERS = {"small": "S", "medium": "M", "large": "L"}


def selected(event: Any, name: str) -> dict[str, Any] | None:
    """The first point a chart selection ``name`` holds in a Streamlit ``on_select`` event (or None)."""
    try:
        points = event["selection"][name]
    except (KeyError, TypeError):
        return None
    return points[0] if points else None


def _instance_labels(rel: InstanceRelations, class_names: dict[int, str] | list[str] | None) -> list[str]:
    """ "#k class S" per instance of the matrix order (the class left out without labels)."""
    out = []
    for k, size in enumerate(rel.sizes):
        name = ""
        if rel.labels is not None:
            label = int(rel.labels[k])
            name = f" {class_names[label]}" if class_names is not None else f" class {label}"
        out.append(f"#{k}{name} {SIZE_LETTERS.get(size, size)}")
    return out


def class_blocks(labels: np.ndarray | None) -> list[tuple[int, int]]:
    """[start, end) of each run of one class in the matrix order (nothing without labels or for a run of one)."""
    if labels is None or len(labels) == 0:
        return []
    blocks, start = [], 0
    for k in range(1, len(labels) + 1):
        if k == len(labels) or labels[k] != labels[start]:
            if k - start > 1:
                blocks.append((start, k))
            start = k
    return blocks


def relation_cells(
    relations: dict[str, InstanceRelations], class_names: dict[int, str] | list[str] | None = None
) -> pd.DataFrame:
    """One row per (model, i, j), i ≠ j, of the matrices: ``role``, ``model``, ``row``, ``col``, ``value``, and both
    instances' ``row_label`` / ``col_label``, ``row_size`` / ``col_size``, ``same_class``."""
    rows = []
    for role, rel in relations.items():
        names = _instance_labels(rel, class_names)
        n = len(rel.order)
        for i in range(n):
            for j in range(n):
                if i == j and n > 1:
                    continue  # the diagonal is left out of the relation (row i relates i to the others)
                rows.append(
                    {
                        "role": role,
                        "model": role_title(role),
                        "row": i,
                        "col": j,
                        "value": float(rel.matrix[i, j]),
                        "row_label": names[i],
                        "col_label": names[j],
                        "row_size": rel.sizes[i],
                        "col_size": rel.sizes[j],
                        "same_class": None if rel.labels is None else bool(rel.labels[i] == rel.labels[j]),
                    }
                )
    return pd.DataFrame(rows)


def _index_axis(n: int, names: list[str], title: str | None) -> Any:
    alt = _alt()
    array = "[" + ",".join(repr(name) for name in names) + "]"
    return alt.Axis(
        values=[k + 0.5 for k in range(n)],
        labelExpr=f"{array}[floor(datum.value)]",
        title=title,
        labelFontSize=9,
        grid=False,
        ticks=False,
        labelOverlap=False,
    )


CLASS_PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")


def _outline(x: float, x2: float, y: float, y2: float, color: str) -> Any:
    """An unfilled rectangle (no axes of its own: the layer it joins has them)."""
    alt = _alt()
    frame = pd.DataFrame({"x": [x], "x2": [x2], "y": [y], "y2": [y2]})
    return (
        alt.Chart(frame)
        # clipped to the plot: an outline at the edge must not grow the chart (and move every cell a click aims at)
        .mark_rect(fill=None, stroke=color, strokeWidth=2.5, clip=True)
        .encode(x=alt.X("x:Q", axis=None), x2="x2:Q", y=alt.Y("y:Q", axis=None), y2="y2:Q")
    )


def _matrix_panel(
    frame: pd.DataFrame,
    rel: InstanceRelations,
    names: list[str],
    scale: Any,
    pair: Any,
    side: int,
    highlight: int | None,
) -> Any:
    """One model's matrix: its cells on the shared ``scale`` (clicks fill the ``pair`` selection), its class
    blocks outlined in white, the ``highlight`` row in gold."""
    alt = _alt()
    n = len(rel.order)
    cells = (
        alt.Chart(frame)
        .mark_rect()
        .encode(
            x=alt.X(
                "col:Q", scale=alt.Scale(domain=[0, n], nice=False, zero=True), axis=_index_axis(n, names, "relates to")
            ),
            x2=alt.X2("col_end:Q"),
            # the instance labels once, on the strip; the matrices share its rows
            y=alt.Y("row:Q", scale=alt.Scale(domain=[0, n], nice=False, reverse=True), axis=None),
            y2=alt.Y2("row_end:Q"),
            color=alt.Color("value:Q", scale=scale, title="A_ij (sqrt scale)"),
            opacity=alt.condition(pair, alt.value(1.0), alt.value(0.55)),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("row_label:N", title="instance (row)"),
                alt.Tooltip("col_label:N", title="relates to (column)"),
                alt.Tooltip("value:Q", format=".3f", title="A_ij"),
                alt.Tooltip("same_class:N", title="same class"),
            ],
        )
        .transform_calculate(col_end="datum.col + 1", row_end="datum.row + 1")
        .add_params(pair)
    )
    layers = [cells, *(_outline(a, b, a, b, "white") for a, b in class_blocks(rel.labels))]
    if highlight is not None and 0 <= highlight < n:
        layers.append(_outline(0, n, highlight, highlight + 1, "#ffd700"))
    title = role_title(rel.role) + (" (learned A)" if rel.source == "learned" else "")
    return alt.layer(*layers).properties(width=side, height=side, title=title)


def _class_strip(rel: InstanceRelations, names: list[str], side: int) -> Any:
    """The instances as a column of cells in their class's colour, labelled; a click fills ``SELECT_INSTANCE``."""
    alt = _alt()
    n = len(rel.order)
    labels = rel.labels if rel.labels is not None else np.zeros(n, dtype=int)
    frame = pd.DataFrame(
        {
            "row": range(n),
            "instance": names,
            "class": [name.split(" ")[1] if name.count(" ") > 1 else "" for name in names],
            "size": rel.sizes,
            # the class's colour as data, not as a colour scale: the matrices keep the one colour legend
            "fill": [CLASS_PALETTE[int(label) % len(CLASS_PALETTE)] for label in labels],
        }
    )
    pick = alt.selection_point(name=SELECT_INSTANCE, fields=["row"], on="click", clear="dblclick")
    y_scale = alt.Scale(domain=[0, n], nice=False, reverse=True)
    return (
        alt.Chart(frame)
        .mark_rect(stroke="white")
        .encode(
            x=alt.X("zero:Q", axis=None, scale=alt.Scale(domain=[0, 1])),
            x2="one:Q",
            y=alt.Y("row:Q", scale=y_scale, axis=_index_axis(n, names, "instance (click to pick)")),
            y2=alt.Y2("row_end:Q"),
            fill=alt.Fill("fill:N", scale=None),
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.7)),
            tooltip=["instance:N", "class:N", "size:N"],
        )
        .transform_calculate(zero="0", one="1", row_end="datum.row + 1")
        .add_params(pick)
        .properties(width=14, height=side)
    )


def relation_matrices_chart(
    relations: dict[str, InstanceRelations],
    class_names: dict[int, str] | list[str] | None = None,
    highlight: int | None = None,
    width: int = 480,
) -> Any:
    """Each model's relation matrix (row i: how instance i relates to the others), side by side on one square-root
    colour scale, in the order of ``relations`` (instances ordered by class then size when the relations were
    computed with labels), class blocks outlined, and a strip of the instances coloured by class on the left.
    ``highlight``: an instance whose row is outlined in every matrix. ``width``: what the matrices share (the
    instance labels, the strip and the legend come on top). Selections: ``SELECT_PAIR`` (a cell),
    ``SELECT_INSTANCE`` (the strip)."""
    alt = _alt()
    roles = list(relations)
    first = relations[roles[0]]
    names = _instance_labels(first, class_names)
    side = max(120, min(260, width // len(roles)))
    data = relation_cells(relations, class_names)
    peak = float(data["value"].max()) if len(data) else 1.0
    scale = alt.Scale(type="sqrt", domain=[0, peak], scheme="viridis")
    pair = alt.selection_point(name=SELECT_PAIR, fields=["role", "row", "col"], on="click", clear="dblclick")
    panels = [
        _matrix_panel(data[data["role"] == role], relations[role], names, scale, pair, side, highlight)
        for role in roles
    ]
    with warnings.catch_warnings():
        # one click selection over every matrix is what is wanted: Altair merges the panels' copies into one
        warnings.filterwarnings("ignore", message="Automatically deduplicated selection parameter")
        chart = alt.hconcat(_class_strip(first, names, side), *panels, spacing=8)
    return chart.configure_view(strokeWidth=0).configure_title(fontSize=12)


def relation_metrics_chart(frame: pd.DataFrame, metric: str) -> Any:
    """Bars of a split-wide relation metric per model (and size), mean over seeds with its 95 % interval where
    there are several. ``frame``: :func:`drkd_viz.experiments.relation_report.relation_metric_frame`."""
    alt = _alt()
    data = frame[frame["metric"] == metric].copy()
    models = list(dict.fromkeys(data["model"]))
    data["model title"] = data["model"].map(role_title)
    sizes = [s for s in ("small", "medium", "large", "all") if s in set(data["size"])]
    order = [role_title(m) for m in models]
    # the AUC has one value per model (all sizes): bars per model; the agreement: per size, a bar per model
    position = (
        {"x": alt.X("size:N", sort=sizes, title=None), "xOffset": alt.XOffset("model title:N", sort=order)}
        if len(sizes) > 1
        else {"x": alt.X("model title:N", sort=order, title=None, axis=alt.Axis(labels=False))}
    )
    base = alt.Chart(data).encode(
        **position,
        tooltip=[
            alt.Tooltip("model title:N", title="model"),
            "size:N",
            "level:N",
            alt.Tooltip("mean:Q", format=".3f"),
            alt.Tooltip("ci_low:Q", format=".3f", title="95 % CI low"),
            alt.Tooltip("ci_high:Q", format=".3f", title="95 % CI high"),
            alt.Tooltip("seeds:Q"),
        ],
    )
    title = {"auc": "Same-class AUC (0.5: no class information)", "row_l1": "Row L1 to the teacher (lower: closer)"}
    bars = base.mark_bar().encode(
        y=alt.Y("mean:Q", title=metric.replace("_", " ")),
        color=alt.Color("model title:N", scale=_model_scale(models), title="model"),
    )
    whiskers = base.mark_rule(color="black").encode(y="ci_low:Q", y2="ci_high:Q")
    layers = [bars, whiskers]
    if metric == "auc":
        layers.append(alt.Chart(pd.DataFrame({"y": [0.5]})).mark_rule(color="#888", strokeDash=[4, 3]).encode(y="y:Q"))
    return alt.layer(*layers).properties(height=240, title=title.get(metric, metric))


def controls_chart(frame: pd.DataFrame, metric: str = "AP") -> Any:
    """The controlled study as one chart: each arm's gain over the baseline (paired by seed) with its 95 % interval,
    grouped by what the arm keeps. ``frame``: :func:`drkd_viz.experiments.relation_report.controls_frame`."""
    alt = _alt()
    data = frame[frame["metric"] == metric].copy()
    order = list(data["arm"])
    base = alt.Chart(data).encode(
        y=alt.Y("arm:N", sort=order, title=None, axis=alt.Axis(labelLimit=320)),
        tooltip=[
            "arm:N",
            "keeps:N",
            alt.Tooltip("gain:Q", format="+.2f", title=f"Δ{metric} vs baseline"),
            alt.Tooltip("ci_low:Q", format="+.2f", title="95 % CI low"),
            alt.Tooltip("ci_high:Q", format="+.2f", title="95 % CI high"),
            alt.Tooltip("seeds:Q"),
        ],
    )
    bars = base.mark_bar().encode(
        x=alt.X("gain:Q", title=f"{metric} gain over the baseline (points)"),
        color=alt.Color(
            "keeps:N",
            title="the arm keeps",
            scale=alt.Scale(
                domain=["imitation", "relations", "both", "neither"],
                range=["#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f"],
            ),
        ),
    )
    whiskers = base.mark_rule(color="black").encode(x="ci_low:Q", x2="ci_high:Q")
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#888").encode(x="x:Q")
    return (bars + whiskers + zero).properties(
        height=alt.Step(22), title=f"What relations add: each arm's {metric} gain over the baseline"
    )
