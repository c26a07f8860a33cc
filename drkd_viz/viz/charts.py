"""Interactive charts (Vega-Lite through Altair) where people explore: hover shows every value, the dashboard
filters its gallery by a click on a bar. They take the same tables as the PNG figures beside them
(:mod:`drkd_viz.analysis`), so the CSV and PNG downloads stay what they were.

Altair ships with Streamlit (the ``app`` extra) and with the ``notebooks`` extra; the core library does not
need it, so it is imported when a chart is made.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from drkd_viz.tide import ERROR_LABELS, ERROR_TYPES, SPECIAL_TYPES, Confusion
from drkd_viz.viz.common import ROLE_COLORS, role_title

SELECT_ERROR = "error_pick"  # the name of the bar selection in the error breakdown (the page reads it)


def _alt() -> Any:
    try:
        import altair as alt
    except ImportError as exc:  # pragma: no cover - a core-only install
        raise ImportError(
            "interactive charts need Altair: pip install 'drkd_viz[app]' or 'drkd_viz[notebooks]'"
        ) from exc
    return alt


def _model_scale(models: list[str]) -> Any:
    alt = _alt()
    palette = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    colors = [ROLE_COLORS.get(m, palette[i % len(palette)]) for i, m in enumerate(models)]
    return alt.Scale(domain=[role_title(m) for m in models], range=colors)


def _run_scale(runs: list[str]) -> Any:
    """Runs named ``<role>-s<seed>``, one per role, in their role's colour (as on every other page); else
    Altair's palette."""
    alt = _alt()
    roles = [re.sub(r"-s\d+$", "", run) for run in runs]
    if len(set(roles)) < len(roles) or not all(role in ROLE_COLORS for role in roles):
        return alt.Undefined
    return alt.Scale(domain=runs, range=[ROLE_COLORS[role] for role in roles])


def error_breakdown_chart(table: pd.DataFrame, size: str = "all", selectable: bool = False) -> Any:
    """Grouped bars: the AP50 each error type costs (what fixing it gives back), one bar per model, mean over the
    model's seeds, for one object size. ``table``: :func:`drkd_viz.analysis.detection_errors.error_table`.
    ``selectable``: a click picks an (error, model) bar (selection ``SELECT_ERROR``)."""
    alt = _alt()
    rows = table[(table["size"] == size) & table["error"].isin(ERROR_TYPES)]
    data = (
        rows.groupby(["model", "error"], sort=False)
        .agg(recovered=("recovered", "mean"), count=("count", "mean"), ap=("ap", "mean"), seeds=("seed", "nunique"))
        .reset_index()
    )
    models = list(dict.fromkeys(rows["model"]))
    data["AP points"] = 100 * data["recovered"]
    data["AP50 (%)"] = 100 * data["ap"]
    data["type"] = data["error"].map(ERROR_LABELS)
    data["model title"] = data["model"].map(role_title)
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("type:N", sort=[ERROR_LABELS[k] for k in ERROR_TYPES], title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("model title:N", sort=[role_title(m) for m in models]),
            y=alt.Y("AP points:Q", title=f"AP50 lost ({size} objects, points)"),
            color=alt.Color("model title:N", scale=_model_scale(models), title="model"),
            tooltip=[
                alt.Tooltip("model title:N", title="model"),
                alt.Tooltip("type:N", title="error"),
                alt.Tooltip("AP points:Q", format=".2f", title="AP50 recovered by fixing it"),
                alt.Tooltip("count:Q", format=".1f", title="errors (mean over seeds)"),
                alt.Tooltip("AP50 (%):Q", format=".1f", title=f"AP50 {size}"),
                alt.Tooltip("seeds:Q"),
            ],
        )
        .properties(height=280, title=f"Where AP50 goes: TIDE error types, {size} objects")
    )
    if selectable:
        pick = alt.selection_point(name=SELECT_ERROR, fields=["error", "model"], on="click")
        chart = chart.add_params(pick).encode(opacity=alt.condition(pick, alt.value(1.0), alt.value(0.35)))
    return chart


def error_gains_chart(gains: pd.DataFrame, size: str = "all") -> Any:
    """Each student's AP50 lost to each error type minus the baseline's (paired by seed), with its 95 % interval:
    below 0, the student loses less AP to that error than the baseline. ``gains``:
    :func:`drkd_viz.analysis.detection_errors.error_gains`."""
    alt = _alt()
    data = gains[gains["size"] == size].copy()
    models = list(dict.fromkeys(data["model"]))
    for column in ("difference", "ci_low", "ci_high", "recovered", "reference"):
        data[column] = 100 * data[column]
    data["type"] = data["error"].map(ERROR_LABELS)
    data["model title"] = data["model"].map(role_title)
    order = [ERROR_LABELS[k] for k in (*ERROR_TYPES, *SPECIAL_TYPES)]
    base = alt.Chart(data).encode(
        y=alt.Y("type:N", sort=order, title=None),
        yOffset=alt.YOffset("model title:N", sort=[role_title(m) for m in models]),
        color=alt.Color("model title:N", scale=_model_scale(models), title="model"),
        tooltip=[
            alt.Tooltip("model title:N", title="model"),
            alt.Tooltip("type:N", title="error"),
            alt.Tooltip("difference:Q", format="+.2f", title="AP50 lost − baseline's (points)"),
            alt.Tooltip("ci_low:Q", format="+.2f", title="95 % CI low"),
            alt.Tooltip("ci_high:Q", format="+.2f", title="95 % CI high"),
            alt.Tooltip("recovered:Q", format=".2f", title="model's AP50 lost"),
            alt.Tooltip("reference:Q", format=".2f", title="baseline's AP50 lost"),
            alt.Tooltip("seeds:Q"),
        ],
    )
    bars = base.mark_bar().encode(x=alt.X("difference:Q", title=f"AP50 lost, student − baseline ({size}, points)"))
    whiskers = base.mark_rule(color="black").encode(x="ci_low:Q", x2="ci_high:Q")
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#888").encode(x="x:Q")
    return (bars + whiskers + zero).properties(
        height=alt.Step(12), title=f"Which errors distillation changes ({size} objects; < 0: fewer lost)"
    )


def confusion_chart(confusion: Confusion, reference: Confusion | None = None, title: str = "") -> Any:
    """Heatmap of a confusion matrix normalised by ground truth (rows: true class and background, columns:
    predicted class and "background" = missed), or with ``reference`` the difference model − reference."""
    alt = _alt()
    share = confusion.normalised()
    counts = confusion.counts
    if reference is not None:
        if reference.labels != confusion.labels:
            raise ValueError("the two confusion matrices have different classes")
        share = share - reference.normalised()
    labels = confusion.labels
    rows = [
        {"true": labels[i], "predicted": labels[j], "share": float(share[i, j]), "count": int(counts[i, j])}
        for i in range(len(labels))
        for j in range(len(labels))
    ]
    data = pd.DataFrame(rows)
    limit = float(np.abs(share).max()) or 1.0
    scale = (
        alt.Scale(scheme="redblue", domain=[-limit, limit], reverse=True)
        if reference is not None
        else alt.Scale(scheme="blues", domain=[0, 1])
    )
    value_title = "share − baseline's" if reference is not None else "share of the row"
    base = alt.Chart(data).encode(
        x=alt.X("predicted:N", sort=labels, title="predicted"),
        y=alt.Y("true:N", sort=labels, title="true"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("share:Q", scale=scale, title=value_title),
        tooltip=[
            "true:N",
            "predicted:N",
            alt.Tooltip("share:Q", format="+.3f" if reference is not None else ".3f", title=value_title),
            alt.Tooltip("count:Q", title="count (this model)"),
        ],
    )
    text = base.mark_text(fontSize=9).encode(
        text=alt.Text("share:Q", format="+.2f" if reference is not None else ".2f"),
        color=alt.condition(f"abs(datum.share) > {0.6 * limit}", alt.value("white"), alt.value("black")),
    )
    return (cells + text).properties(width=alt.Step(34), height=alt.Step(26), title=title)


def ap_by_size_chart(frame: pd.DataFrame) -> Any:
    """Bars of AP by object size per model with their 95 % intervals over seeds, values on hover.
    ``frame``: :func:`drkd_viz.analysis.small_objects.ap_by_size`."""
    alt = _alt()
    data = frame.drop(columns=["values"]).copy()
    models = list(dict.fromkeys(data["model"]))
    for column in ("mean", "std", "ci_low", "ci_high"):
        data[column] = 100 * data[column]
    data["model title"] = data["model"].map(role_title)
    base = alt.Chart(data).encode(
        x=alt.X("size:N", sort=["all", "small", "medium", "large"], title=None),
        xOffset=alt.XOffset("model title:N", sort=[role_title(m) for m in models]),
        tooltip=[
            alt.Tooltip("model title:N", title="model"),
            "size:N",
            alt.Tooltip("mean:Q", format=".1f", title="AP (%)"),
            alt.Tooltip("std:Q", format=".1f", title="std over seeds"),
            alt.Tooltip("ci_low:Q", format=".1f", title="95 % CI low"),
            alt.Tooltip("ci_high:Q", format=".1f", title="95 % CI high"),
            alt.Tooltip("n:Q", title="seeds"),
        ],
    )
    bars = base.mark_bar().encode(
        y=alt.Y("mean:Q", title="COCO AP (%)"),
        color=alt.Color("model title:N", scale=_model_scale(models), title="model"),
    )
    whiskers = base.mark_rule(color="black").encode(y="ci_low:Q", y2="ci_high:Q")
    return (bars + whiskers).properties(height=300, title="AP by object size (mean over seeds, 95 % interval)")


def pr_curves_chart(frame: pd.DataFrame, area: str = "small") -> Any:
    """Precision–recall curves of each model for one object size, with a hover rule that reads every curve at
    the same recall. ``frame``: :func:`drkd_viz.analysis.small_objects.pr_curves`."""
    alt = _alt()
    data = frame[frame["area"] == area].dropna(subset=["precision"]).copy()
    models = list(dict.fromkeys(data["model"]))
    data["model title"] = data["model"].map(role_title)
    hover = alt.selection_point(fields=["recall"], nearest=True, on="pointerover", empty=False)
    lines = (
        alt.Chart(data)
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("recall:Q", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("precision:Q", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("model title:N", scale=_model_scale(models), title="model"),
        )
    )
    points = lines.mark_point().encode(opacity=alt.condition(hover, alt.value(1), alt.value(0)))
    rule = (
        alt.Chart(data)
        .mark_rule(color="gray")
        .encode(
            x="recall:Q",
            opacity=alt.condition(hover, alt.value(0.5), alt.value(0)),
            tooltip=[alt.Tooltip("recall:Q", format=".2f")]
            + [alt.Tooltip(f"{role_title(m)}:Q", format=".3f") for m in models],
        )
        .transform_pivot("model title", value="precision", groupby=["recall"])
        .add_params(hover)
    )
    iou = data["iou"].iloc[0] if len(data) else ""
    return (lines + points + rule).properties(height=300, title=f"Precision–recall, {area} objects (IoU {iou})")


def training_curves_chart(
    frames: dict[str, pd.DataFrame], terms: list[str], smooth: int = 1, log_scale: bool = False, title: str = ""
) -> Any:
    """Training curves: one panel per logged term (each with its own scale), one line per run, against the
    iteration, with a moving average of ``smooth`` iterations; hover for run, iteration and value. ``frames``: run
    name -> its metrics.jsonl as a table indexed by iteration (:func:`drkd_viz.analysis.training.read_metrics`)."""
    alt = _alt()
    parts = []
    for run, frame in frames.items():
        present = [t for t in terms if t in frame.columns]
        if not present:
            continue
        values = frame[present].rolling(smooth, min_periods=1).mean() if smooth > 1 else frame[present]
        long = values.rename_axis("iteration").reset_index().melt("iteration", var_name="term", value_name="value")
        long["run"] = run
        parts.append(long.dropna())
    data = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["iteration", "term", "value", "run"])
    if log_scale:
        data = data[data["value"] > 0]
    hover = alt.selection_point(fields=["iteration"], nearest=True, on="pointerover", empty=False)
    lines = (
        alt.Chart()
        .mark_line()
        .encode(
            x=alt.X("iteration:Q"),
            y=alt.Y("value:Q", title=None, scale=alt.Scale(type="log" if log_scale else "linear")),
            color=alt.Color(
                "run:N", sort=list(frames), scale=_run_scale(list(frames)), legend=alt.Legend(orient="bottom")
            ),
        )
    )
    points = lines.mark_point(size=20).encode(
        opacity=alt.condition(hover, alt.value(1), alt.value(0)),
        tooltip=["run:N", "term:N", "iteration:Q", alt.Tooltip("value:Q", format=".4g")],
    )
    # a faceted chart keeps its panels' fixed width (it cannot stretch): two 240 px columns and the legend below
    # fit the Runs page's chart column on a laptop screen, where three overflowed it
    panels = alt.layer(lines, points.add_params(hover)).properties(width=240, height=170)
    return (
        panels.facet(facet=alt.Facet("term:N", sort=terms, title=None), columns=2, data=data)
        .resolve_scale(y="independent")
        .properties(title=title)
    )
