"""Ablations: the `study` preset's runs (DRKD and each ablation against the baseline) as a filterable
table and charts."""

from __future__ import annotations

import streamlit as st
from _shared import context, figures, widgets

from drkd_viz.distill.config import ABLATIONS, CONTROLS, ablation_settings
from drkd_viz.experiments.relation_report import controls_frame, controls_sentence
from drkd_viz.runs.reports import leaderboard
from drkd_viz.viz import ablations as vabl
from drkd_viz.viz import relation_charts as rcharts

ctx = context.current()
st.title("Ablations")

names = [r.preset for r in ctx.reports]
preset = "study" if "study" in names else ctx.preset
info = ctx.reports[names.index(preset)]
report = context.cached_report(ctx.root_key, preset, info.mtime)
ablations = [m for m in report["models"] if m in ABLATIONS and m != "drkd"]
if preset != "study":
    st.info(
        f"This runs folder has no `study` report; showing `{preset}`. The ablations come with the study preset: "
        f"`drkd-viz pipeline --preset study --out {ctx.root}` (five seeds of the comparison, one of each ablation; "
        "hours on a CPU)."
    )
st.caption(
    f"Report `{preset}`, seeds {report['seeds']}. Each ablation switches one part of DRKD off or replaces it "
    "(`drkd_viz/distill/config.py`). Δ: gain over the baseline student paired by seed, in AP points; an interval "
    "needs more than one seed."
)


st.subheader("What relations add beyond imitation")
controls = controls_frame(report)
if controls.empty:
    st.info(
        "This report has none of the controlled study's arms (relation only, the rotated teacher, shuffled "
        f"targets); they come with the study preset: `drkd-viz pipeline --preset study --out {ctx.root}`."
    )
else:
    c1, c2 = st.columns([3, 1])
    with c2:
        control_metric = st.radio("Gain in", ["AP", "APs"], horizontal=True, key="ablations_controls_metric")
        st.caption(
            "Rotation: the teacher's features turned by a fresh random orthogonal matrix every step, which "
            "scrambles any imitation target and leaves every cosine relation as it was. Shuffling: the relation "
            "targets' instances permuted within each image, which keeps their statistics and destroys their content."
        )
    with c1:
        widgets.show_chart(rcharts.controls_chart(controls, control_metric), "ablations_controls")
    sentence = controls_sentence(report)
    if sentence:
        st.markdown(sentence)
    if controls["seeds"].max() < 2:
        st.caption("One seed: no intervals. The `study` report pairs five seeds.")


def kind(model: str) -> str:
    """method (the compared ones), ablation (a part of DRKD switched) or control (the controlled study's arms)."""
    if model in CONTROLS:
        return "control"
    return "ablation" if model in ABLATIONS and model != "drkd" else "method"


@st.cache_data(show_spinner=False, max_entries=8)
def table(root: str, preset: str, stamp: float):
    frame = leaderboard(context.cached_report(root, preset, stamp), gain_keys=("AP", "APs", "APm", "APl"))
    frame.insert(1, "setting", [ablation_settings(m) for m in frame["model"]])
    frame.insert(2, "kind", [kind(m) for m in frame["model"]])
    return frame


board = table(ctx.root_key, preset, info.mtime)
left, right = st.columns([1, 3])
with left:
    kinds = st.multiselect(
        "Show", ["method", "ablation", "control"], default=["method", "ablation", "control"], key="ablations_kinds"
    )
    text = st.text_input("Filter by name or setting", "", key="ablations_filter")
    metric = st.selectbox("Chart", ["ΔAP", "ΔAPs", "ΔAPm", "ΔAPl", "AP", "APs", "APm", "APl"], key="ablations_metric")
view = board[board["kind"].isin(kinds)]
if text:
    mask = view["model"].str.contains(text, case=False, regex=False) | view["setting"].str.contains(
        text, case=False, regex=False
    )
    view = view[mask]
columns = ["model", "setting", "seeds", "AP", "APs", "APm", "APl"] + [c for c in view.columns if c.startswith("Δ")]


@st.cache_data(show_spinner=False, max_entries=64)
def chart(root: str, preset: str, stamp: float, metric: str, shown: tuple[str, ...]) -> bytes:
    frame = table(root, preset, stamp)
    frame = frame[frame["model"].isin(shown) & frame[metric].notna()]
    gain = metric.startswith("Δ")
    title = f"{metric}: gain over the baseline" if gain else f"Test {metric}"
    return widgets.png_of(figures.metric_bars(frame, metric, title, "AP points" if gain else f"{metric} (%)"))


with right:
    if view.empty:
        st.info("No model matches the filter.")
        st.stop()
    if view[metric].isna().all():
        st.info(f"No {metric} for these models (a gain needs a baseline and a student).")
    else:
        png = chart(ctx.root_key, preset, info.mtime, metric, tuple(view["model"]))
        widgets.show_png(png, f"ablations_{metric}.png", "ablations_chart")
widgets.show_table(view[columns].round(2), f"ablations_{preset}.csv", "ablations")


@st.cache_data(show_spinner=False, max_entries=64)
def gains_chart(root: str, preset: str, stamp: float, shown: tuple[str, ...]) -> bytes:
    frame = table(root, preset, stamp)
    return widgets.png_of(vabl.plot_ablations(frame[frame["model"].isin(shown)], title=f"report {preset}"))


st.subheader("Gains over the baseline, AP and AP_S")
widgets.show_png(
    gains_chart(ctx.root_key, preset, info.mtime, tuple(view["model"])), "ablation_gains.png", "ablations_gains"
)
if not ablations:
    st.caption("No ablation runs in this report.")
