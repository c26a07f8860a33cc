"""Runs: training curves of every loss term from the run folders' metrics.jsonl."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
from _shared import context, figures, widgets

from drkd_viz.analysis.training import DISTILL_TERMS, detection_loss, read_metrics, run_summary
from drkd_viz.runs import RunFolder, inside, run_folders
from drkd_viz.viz import charts
from drkd_viz.viz.diagnostics import HOW_TO_READ, diagnostic_groups, plot_diagnostics

ctx = context.current()
st.title("Runs")
st.caption(
    f"Per-iteration training logs (`RUN/metrics.jsonl`) of the run folders in `{ctx.root}`. Distillation terms "
    "are logged already multiplied by their weights, so their size against the detection loss is what the "
    "optimiser sees."
)

NOT_PLOTTED = {"iter", "time", "data_time"}


@st.cache_data(show_spinner=False, max_entries=64)
def metrics(root: str, name: str, mtime: float, size: int):
    frame = read_metrics(inside(Path(root), name))
    frame["detection loss"] = detection_loss(frame)
    return frame


def metrics_file(name: str) -> Path:
    return inside(ctx.root, RunFolder(Path(name)).metrics)


folders = run_folders(ctx.root)
if not folders:
    st.info(f"No run folder with a metrics.jsonl in {ctx.root}.")
    st.stop()

names = [f.relative_to(ctx.root.resolve()).as_posix() for f in folders]  # study/teacher vs teacher
summary = [run_summary(f, name) for f, name in zip(folders, names, strict=True)]
in_report = [rel for entry in ctx.report["models"].values() for rel in entry["runs"]]
default = [n for n in names if n in in_report and not n.rsplit("/", 1)[-1].startswith("teacher")] or names
chosen = st.multiselect("Runs", names, default=default, key="runs_chosen")
frames = {}
for name in chosen:
    stat = metrics_file(name).stat()
    frames[name] = metrics(ctx.root_key, name, stat.st_mtime, stat.st_size)

numeric = sorted({c for f in frames.values() for c in f.columns if c not in NOT_PLOTTED and f[c].dtype.kind == "f"})
preferred = ["loss", "detection loss", *DISTILL_TERMS]
left, right = st.columns([1, 3])
with left:
    terms = st.multiselect(
        "Terms",
        numeric,
        default=[t for t in preferred if t in numeric],
        key="runs_terms",
        help="loss: the total; detection loss: the detector's own terms summed; loss_pr / loss_ir / loss_ins: "
        "DRKD's weighted terms; loss_fi: feature imitation; pr_P2 …: unweighted per-level values.",
    )
    smooth = st.slider("Smoothing (moving average, iterations)", 1, 50, 5, key="runs_smooth")
    log_scale = st.toggle("Logarithmic scale", value=False, key="runs_log")
    ratio = st.toggle("Divide by the detection loss", value=False, key="runs_ratio")


@st.cache_data(show_spinner=False, max_entries=64)
def curves(root: str, keys: tuple, terms: tuple[str, ...], smooth: int, log_scale: bool, ratio: bool) -> bytes:
    shown = {}
    for name, mtime, size in keys:
        frame = metrics(root, name, mtime, size)
        if ratio:
            frame = frame[[t for t in terms if t in frame]].div(frame["detection loss"], axis=0)
        shown[name] = frame
    title = (
        "Training terms"
        + (" ÷ detection loss" if ratio else "")
        + (f", {smooth}-iteration average" if smooth > 1 else "")
    )
    return widgets.png_of(figures.training_curves(shown, list(terms), smooth, log_scale, title))


with right:
    if chosen and terms:
        keys = tuple((n, (s := metrics_file(n).stat()).st_mtime, s.st_size) for n in chosen)
        shown = {}
        for name, mtime, size in keys:
            frame = metrics(ctx.root_key, name, mtime, size)
            shown[name] = (
                frame[[t for t in terms if t in frame]].div(frame["detection loss"], axis=0) if ratio else frame
            )
        title = (
            "Training terms"
            + (" ÷ detection loss" if ratio else "")
            + (f", {smooth}-iteration average" if smooth > 1 else "")
        )
        st.altair_chart(charts.training_curves_chart(shown, list(terms), smooth, log_scale, title), width="stretch")
        widgets.png_download(
            curves(ctx.root_key, keys, tuple(terms), smooth, log_scale, ratio), "training_curves.png", "runs_curves"
        )
    else:
        st.info("Pick at least one run and one term.")

st.subheader("Diagnostics: why did distillation help, or not?")
diagnosed = [n for n in chosen if diagnostic_groups(frames[n].columns)]
if not diagnosed:
    st.info(
        "None of the chosen runs logged diagnostics. Runs log them every `train.log_every` iterations "
        "(10 by default): every run its ‖∇L_det‖ and clip factor, distillation runs the rest."
    )
else:
    run_name = st.selectbox("Run", diagnosed, key="runs_diagnosed")

    @st.cache_data(show_spinner=False, max_entries=32)
    def diagnostics_png(root: str, name: str, mtime: float, size: int) -> bytes:
        frame = metrics(root, name, mtime, size)
        return widgets.png_of(plot_diagnostics(frame, title=f"{name}: diagnostics"))

    stat = metrics_file(run_name).stat()
    widgets.show_png(
        diagnostics_png(ctx.root_key, run_name, stat.st_mtime, stat.st_size),
        "diagnostics.png",
        "runs_diagnostics",
    )
    st.markdown(HOW_TO_READ)

st.subheader("Run folders")
widgets.show_table(pd.DataFrame(summary).round(2), "runs.csv", "runs_summary")
