"""What every page needs: the runs folder, the chosen report and seed, and cached loaders.

Models and datasets are cached per server (``st.cache_resource``), reports and computed results
per argument values (``st.cache_data``). A stamp of the runs (the report file's modification time)
is part of every key, so a rebuilt runs folder is read afresh.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from drkd_viz.runs import runs_root
from drkd_viz.runs.reports import ReportInfo, default_report, list_reports, read_report, replaced_runs

from . import state


@dataclass
class Context:
    root: Path
    reports: list[ReportInfo]
    preset: str | None = None
    report: dict[str, Any] | None = None
    stamp: float = 0.0  # modification time of the chosen report (cache key)
    seed: int = 0

    @property
    def root_key(self) -> str:
        return str(self.root)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_report(root: str, preset: str, mtime: float) -> dict[str, Any]:
    return read_report(Path(root), preset)


def current() -> Context:
    """The context for this script run: the reports of the runs folder, the one picked in the sidebar
    (widget key ``report``; default ``demo`` or the newest) and the seed (key ``seed``)."""
    root = runs_root(argv=sys.argv[1:])
    reports = list_reports(root)
    ctx = Context(root, reports)
    if not reports:
        return ctx
    names = [r.preset for r in reports]
    if state.REPORT_WANTED in st.session_state:  # set by the Build page; applied before the sidebar widget exists
        st.session_state[state.REPORT] = st.session_state.pop(state.REPORT_WANTED)
    preset = st.session_state.get(state.REPORT)
    if preset not in names:
        preset = default_report(reports)
    info = reports[names.index(preset)]
    ctx.preset, ctx.stamp = preset, info.mtime
    ctx.report = cached_report(str(root), preset, info.mtime)
    seeds = ctx.report["seeds"]
    seed = st.session_state.get(state.SEED)
    ctx.seed = seed if seed in seeds else seeds[0]
    return ctx


def sidebar(ctx: Context) -> None:
    """The runs folder, the report and seed pickers, and a warning when the report's runs were replaced."""
    with st.sidebar:
        st.caption(f"Runs folder: `{ctx.root}`")
        if not ctx.reports:
            return
        names = [r.preset for r in ctx.reports]
        created = {r.preset: r.created for r in ctx.reports}
        st.selectbox(
            "Report",
            names,
            index=names.index(ctx.preset),
            key=state.REPORT,
            format_func=lambda p: f"{p} ({created[p][:16].replace('T', ' ')})",
            help="Reports of the presets built into this runs folder (RUNS/reports/<preset>/report.json).",
        )
        seeds = ctx.report["seeds"]
        if len(seeds) > 1:
            st.selectbox("Seed (models shown)", seeds, index=seeds.index(ctx.seed), key=state.SEED)
        replaced = replaced_runs(ctx.root, ctx.report)
        if replaced:
            st.warning(
                f"The runs {', '.join(replaced)} were rebuilt with another configuration after this report was "
                "written: its numbers no longer describe the models on disk (the pages that load models use "
                "what is on disk now)."
            )


# ---------------------------------------------------------------- cached heavy loaders
@st.cache_resource(show_spinner="Loading the detectors …", max_entries=4)
def model_set(root: str, preset: str, seed: int, stamp: float):
    """Teacher, baseline and DRKD detectors (and the imitation students) with their relation units: the runs
    the chosen report names for the chosen seed."""
    from drkd_viz.analysis.models import load_model_set

    return load_model_set(root, seed=seed, report=cached_report(root, preset, stamp))


@st.cache_resource(show_spinner=False, max_entries=4)
def test_split(root: str, preset: str, stamp: float):
    """The split the chosen report compares its models on (the pipeline's test split)."""
    from drkd_viz.analysis.models import test_split as open_test_split

    return open_test_split(root, report=cached_report(root, preset, stamp))


def models_of(ctx: Context):
    """The detectors of the chosen report and seed; the page says which run folders they come from."""
    models = model_set(ctx.root_key, ctx.preset, ctx.seed, ctx.stamp)
    shown = ", ".join(f"{role} `{models.run_dirs[role].relative_to(ctx.root).as_posix()}`" for role in models.roles)
    st.caption(f"Models of report `{ctx.preset}`, seed {ctx.seed}: {shown}.")
    return models


def dataset_of(ctx: Context):
    return test_split(ctx.root_key, ctx.preset, ctx.stamp)
