"""Figures only the dashboard draws (leaderboard bars, training curves); the analysis figures come
from drkd_viz.viz. Matplotlib Figure objects, never pyplot (sessions run in threads)."""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from drkd_viz.viz.common import ROLE_COLORS, new_figure, role_color


def metric_bars(table, metric: str, title: str, ylabel: str) -> Figure:
    """One bar per row of ``table`` (column ``model``) for ``metric``, with ``<metric> CI low/high``
    as error bars where the table has them and they are defined (more than one seed)."""
    fig = new_figure(7.0, 3.2)
    ax = fig.subplots()
    names = list(table["model"])
    values = [float(v) for v in table[metric]]
    low_col, high_col = f"{metric} CI low", f"{metric} CI high"
    errors = None
    if low_col in table and high_col in table:
        lows, highs = list(table[low_col]), list(table[high_col])
        if any(not math.isnan(x) for x in lows):
            errors = [
                [0 if math.isnan(lo) else v - lo for v, lo in zip(values, lows, strict=True)],
                [0 if math.isnan(hi) else hi - v for v, hi in zip(values, highs, strict=True)],
            ]
    colors = [role_color(n) if n in ROLE_COLORS else f"C{i + 4}" for i, n in enumerate(names)]
    ax.bar(range(len(names)), values, yerr=errors, capsize=3, color=colors)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel(ylabel)
    ax.set_title(title + ("" if errors else " (one seed: no interval)"), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return fig


def training_curves(frames: dict, terms: list[str], smooth: int, log_scale: bool, title: str) -> Figure:
    """One panel per loss term, one line per run; ``smooth``: moving-average window in iterations."""
    columns = min(3, len(terms))
    rows = math.ceil(len(terms) / columns)
    fig = new_figure(4.2 * columns, 2.8 * rows + 0.6)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, term in zip(axes.flat, terms, strict=False):
        for i, (name, frame) in enumerate(frames.items()):
            if term not in frame:
                continue
            series = frame[term].dropna()
            if smooth > 1:
                series = series.rolling(smooth, min_periods=1).mean()
            ax.plot(series.index, series.values, label=name, color=f"C{i}", linewidth=1.2)
        ax.set_title(term, fontsize=10)
        ax.set_xlabel("iteration")
        if log_scale:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(terms) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig
