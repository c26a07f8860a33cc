"""The DRKD dashboard: `drkd-viz app --runs RUNS` (or `streamlit run app/Home.py -- --runs RUNS`).

The entry file draws the sidebar (runs folder, report, seed) and the navigation; each page is a
thin script in app/views/ (not pages/: that name would switch Streamlit to its older, file-based
navigation, which skips this file): widgets -> drkd_viz.analysis -> drkd_viz.viz figures.
"""

from __future__ import annotations

import streamlit as st
from _shared import context, state

from drkd_viz.errors import UserError

st.set_page_config(page_title="DRKD dashboard", page_icon=":material/hub:", layout="wide")

try:
    ctx = context.current()
except UserError as exc:  # e.g. a report that cannot be read: say what is wrong, no traceback
    st.error(str(exc))
    st.stop()
context.sidebar(ctx)

build = st.Page("views/build.py", title="Build runs", icon=":material/construction:")
if ctx.report is None:
    pages: list | dict = [build]
else:
    overview = st.Page("views/overview.py", title="Overview", icon=":material/leaderboard:", default=True)
    pages = {
        "Results": [
            overview,
            st.Page("views/small_objects.py", title="Small objects", icon=":material/zoom_in:"),
            st.Page("views/errors.py", title="Errors", icon=":material/rule:"),
            st.Page("views/ablations.py", title="Ablations", icon=":material/science:"),
            st.Page("views/runs.py", title="Runs", icon=":material/show_chart:"),
        ],
        "Inside the models": [
            st.Page("views/pixel_relations.py", title="Pixel relations", icon=":material/grid_on:"),
            st.Page("views/instance_relations.py", title="Instance relations", icon=":material/scatter_plot:"),
            st.Page("views/attribution.py", title="Attribution", icon=":material/highlight:"),
        ],
        "Runs folder": [build],
    }
navigation = st.navigation(pages)
if ctx.report is not None and st.session_state.pop(state.OPEN_OVERVIEW, False):
    st.switch_page(overview)  # a build started on the Build page has just finished
try:
    navigation.run()
except UserError as exc:  # a missing run, an unusable image …: the message says what to do
    st.error(str(exc))
