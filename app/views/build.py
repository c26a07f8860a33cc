"""Build runs: with no report in the runs folder, build the `quick` or `demo` pipeline from here,
with a live progress bar read from the run folders."""

from __future__ import annotations

import time

import streamlit as st
from _shared import context, state

from drkd_viz.experiments.builds import (
    BUILD_PRESETS,
    Build,
    build_progress,
    conflicting_runs,
    current_build,
    start_build,
)
from drkd_viz.experiments.pipeline import PRESETS
from drkd_viz.runs import RunsRoot

ctx = context.current()
st.title("Build runs")

if ctx.report is None:
    st.warning(
        f"There are no runs to show yet: no report in `{RunsRoot(ctx.root).reports}`. Build one below (or from a "
        f"terminal: `drkd-viz pipeline --preset demo --out {ctx.root}`)."
    )
else:
    st.write(
        "Reports in this runs folder: " + ", ".join(f"`{r.preset}`" for r in ctx.reports) + ". The `study` preset "
        f"(five seeds and the ablations) takes hours on a CPU: `drkd-viz pipeline --preset study --out {ctx.root}`."
    )


def draw_progress(build: Build) -> None:
    progress = build_progress(ctx.root, build.preset, since=build.started)
    code = build.returncode()
    st.progress(progress.fraction, text=f"`{build.preset}`: {progress.stage}")
    seconds = (build.ended or time.time()) - build.started
    st.caption(f"{seconds:.0f} s {'elapsed' if code is None else 'in all'}")
    st.dataframe(
        [{"run": j.name, "state": j.state, "iterations": f"{j.done} / {j.iterations}"} for j in progress.jobs],
        hide_index=True,
    )
    if code is None:
        return
    if code == 0 and progress.report_written:
        st.success(f"The `{build.preset}` runs are ready.")
    else:
        st.error(f"The build stopped (exit code {code}). The end of its log ({build.log}):")
        st.code(build.log_tail(), language="text")
    if st.session_state.pop(state.WATCHING_BUILD, False):  # it ended while watched: redraw the whole app once
        if code == 0:
            st.session_state[state.REPORT_WANTED] = build.preset  # picked in the sidebar on the next run
            st.session_state[state.OPEN_OVERVIEW] = True  # Home.py turns to the Overview once it is in the navigation
        st.rerun(scope="app")


@st.fragment(run_every=1.0)
def live_progress(build: Build) -> None:
    """Redrawn every second while the build runs (only this part of the page reruns)."""
    draw_progress(build)


build = current_build(ctx.root)
running = build is not None and build.returncode() is None
columns = st.columns(len(BUILD_PRESETS))
for column, preset in zip(columns, BUILD_PRESETS, strict=True):
    with column:
        st.subheader(f"`{preset}`")
        p = PRESETS[preset]
        st.write(f"{p.notes}. Methods: {', '.join(p.methods)}; seeds {list(p.seeds)}.")
        conflicts = conflicting_runs(ctx.root, preset)
        confirmed = True
        if conflicts:
            st.warning(
                f"The run folders {', '.join(conflicts)} hold runs of another configuration; building "
                f"`{preset}` here moves them to a `.stale/` folder beside them (nothing is deleted) and trains anew."
            )
            confirmed = st.checkbox("Move them and build", key=f"confirm_{preset}")
        if st.button(f"Build {preset}", key=f"build_{preset}", disabled=running or not confirmed, type="primary"):
            start_build(ctx.root, preset)
            st.session_state[state.WATCHING_BUILD] = True
            st.rerun()

if build is not None:
    if running:
        st.session_state[state.WATCHING_BUILD] = True
    (live_progress if running else draw_progress)(build)
