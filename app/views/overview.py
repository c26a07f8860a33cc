"""Overview: the report's leaderboard (teacher, baseline, feature imitation, DRKD, ablations) and
what produced it."""

from __future__ import annotations

import streamlit as st
from _shared import context, figures, widgets

from drkd_viz.runs.reports import leaderboard, provenance

ctx = context.current()
report = ctx.report
st.title("Overview")
st.caption(
    f"Report `{ctx.preset}`: {report.get('notes', '')}. Test-split COCO box AP in percent; mean over seeds, "
    "95 % Student-t intervals of the mean where there is more than one seed."
)

facts = provenance(report)
columns = st.columns(4)
for i, (label, value) in enumerate(facts.items()):
    columns[i % 4].markdown(f"**{label}**  \n{value}")


@st.cache_data(show_spinner=False, max_entries=8)
def table(root: str, preset: str, stamp: float):
    return leaderboard(context.cached_report(root, preset, stamp))


board = table(ctx.root_key, ctx.preset, ctx.stamp)
st.subheader("Leaderboard")
models = list(board["model"])
shown = st.multiselect("Models", models, default=models, key="overview_models")
view = board[board["model"].isin(shown)]
accuracy = ["model", "seeds", "AP", "AP50", "AP75", "APs", "APm", "APl"]
cost = ["parameters (M)", "GFLOPs / image", "CPU images / s", "CPU images / s, 1 thread", "CPU speed-up vs teacher"]
gains = [c for c in view.columns if c.startswith(("ΔAP", "gap closed"))]
intervals = [c for c in view.columns if c.endswith(("CI low", "CI high")) and not c.startswith("Δ")]
detail = st.toggle("Show intervals", value=False, key="overview_intervals")
columns = accuracy + (intervals if detail else []) + gains + cost
widgets.show_table(
    view[columns].round(2),
    f"leaderboard_{ctx.preset}.csv",
    "overview",
    column_config={"model": st.column_config.TextColumn(pinned=True)},
)
st.caption(
    "Δ: gain over the baseline student paired by seed; gap closed: the gain as a share of the teacher's lead "
    "over the baseline (empty when the teacher is not ahead by more than half an AP point). Parameters and "
    "speed: teacher and student architectures, CPU, batch 1, measured when the report was written."
)

st.subheader("Compare")
left, right = st.columns([1, 3])
with left:
    metric = st.selectbox("Metric", ["AP", "APs", "APm", "APl", "AP50", "AP75", "ΔAP", "ΔAPs"], key="overview_metric")


@st.cache_data(show_spinner=False, max_entries=64)
def chart(root: str, preset: str, stamp: float, metric: str, shown: tuple[str, ...]) -> bytes:
    frame = table(root, preset, stamp)
    frame = frame[frame["model"].isin(shown)]
    if metric.startswith("Δ"):
        frame = frame[frame[metric].notna()]
        title, ylabel = f"{metric}: gain over the baseline (paired by seed)", "AP points"
    else:
        title, ylabel = f"Test {metric} by model", f"{metric} (%)"
    return widgets.png_of(figures.metric_bars(frame, metric, title, ylabel))


with right:
    if shown:
        widgets.show_png(
            chart(ctx.root_key, ctx.preset, ctx.stamp, metric, tuple(shown)),
            f"{metric}_{ctx.preset}.png",
            "overview_chart",
        )
    else:
        st.info("Pick at least one model.")
