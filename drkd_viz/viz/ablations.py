"""Figures for the ablation study (notebook 04, the dashboard's Ablations page)."""

from __future__ import annotations

import math

from matplotlib.figure import Figure


def plot_ablations(table, title: str = "") -> Figure:
    """Gains over the baseline student (AP and AP_S, percent points) per model, with 95 % intervals over
    seeds where there are several; ``table`` is a report's :func:`drkd_viz.runs.reports.leaderboard`."""
    rows = table[table["model"].isin(["teacher", "baseline"]) == False].reset_index(drop=True)  # noqa: E712
    fig = Figure(figsize=(10, 0.55 * max(len(rows), 1) + 1.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    if rows.empty or "ΔAP" not in rows:
        for ax in axes:
            ax.text(0.5, 0.5, "no students with a baseline to compare", ha="center", va="center")
            ax.set_axis_off()
        return fig
    for ax, key, colour in zip(axes, ("AP", "APs"), ("#4c72b0", "#dd8452"), strict=True):
        gains = rows[f"Δ{key}"]
        low, high = rows[f"Δ{key} CI low"], rows[f"Δ{key} CI high"]
        errors = [
            [g - lo if lo is not None and not _nan(lo) else 0 for g, lo in zip(gains, low, strict=True)],
            [hi - g if hi is not None and not _nan(hi) else 0 for g, hi in zip(gains, high, strict=True)],
        ]
        y = range(len(rows))
        ax.barh(list(y), gains, color=colour, xerr=errors, capsize=4, ecolor="black")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(
            list(y),
            [f"{m} ({s} seed{'s' if s > 1 else ''})" for m, s in zip(rows["model"], rows["seeds"], strict=True)],
        )
        ax.invert_yaxis()
        ax.set_xlabel(f"{'AP' if key == 'AP' else 'AP_S (small objects)'} gain over the baseline (points)")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Gain over the baseline student, 95 % interval over seeds{' — ' + title if title else ''}")
    return fig


def _nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
