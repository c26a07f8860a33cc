"""Instance relations: the relation matrices of the ground-truth instances for the three models and their
differences; an instance picked here is outlined on the image and in every matrix; the split-wide summary
of how close each student's rows come to the teacher's, by object size."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from _shared import context, widgets

from drkd_viz.analysis import instances
from drkd_viz.analysis.models import OPTIONAL_ROLES, ROLE_TITLES, instance_areas
from drkd_viz.experiments.relation_report import relation_table
from drkd_viz.viz import instances as vinst

ctx = context.current()
st.title("Instance relations")
st.caption(
    "Row k of a relation matrix A: how instance k attends to the others (rows sum to 1). Instances are numbered by "
    "area, largest first; tick colours give their size. Ground-truth instances only, so the image comes from the "
    "test split (an upload has none)."
)
models = context.models_of(ctx)
dataset = context.dataset_of(ctx)

left, right = st.columns([1, 3])
with left:
    picked = widgets.image_picker(ctx, "instance", allow_upload=False)
    level = st.selectbox("FPN level", models.instance_levels(), key="instance_level")
    roles = st.multiselect(
        "Models", models.roles, default=[r for r in models.roles if r not in OPTIONAL_ROLES], key="instance_roles"
    )
if not roles:
    st.info("Pick at least one model.")
    st.stop()


@st.cache_data(show_spinner="Running the detectors …", max_entries=64)
def relations(root: str, preset: str, seed: int, stamp: float, index: int, level: str, roles: tuple[str, ...], _picked):
    areas = instance_areas(context.test_split(root, preset, stamp), index)
    return instances.relation_matrices(
        context.model_set(root, preset, seed, stamp), _picked.image, _picked.boxes, level, areas, roles
    )


key = (ctx.root_key, ctx.preset, ctx.seed, ctx.stamp, picked.index, level, tuple(roles))
computed = relations(*key, picked)
first = computed[roles[0]]
if first.source == "parameter-free":
    st.caption(
        f"The DRKD run {models.run_dirs['drkd'].name} has no learned relation module (its L_IR is off): every matrix "
        "is the parameter-free relation of the model's own features, softmax over the other instances of cos / 0.1 "
        "(the diagonal left out): the target its L_IRA distils."
    )
labels = {None: "none"} | {
    k: f"#{k} — {size}, {area:.0f} px²" for k, (size, area) in enumerate(zip(first.sizes, first.areas, strict=True))
}
with left:
    highlight = st.selectbox(
        "Highlight instance", list(labels), format_func=labels.get, index=min(1, len(labels) - 1), key="instance_pick"
    )


@st.cache_data(show_spinner=False, max_entries=256)
def matrices_png(root, preset, seed, stamp, index, level, roles, highlight: int | None, _picked) -> bytes:
    rel = relations(root, preset, seed, stamp, index, level, roles, _picked)
    return widgets.png_of(vinst.plot_relation_matrices(_picked.image, rel, highlight=highlight))


with right:
    png = matrices_png(*key, highlight, picked)
    widgets.show_png(png, f"relations_{level}.png", "instance_matrices")
    if highlight is not None:
        st.markdown(f"**Row of instance #{highlight}** (how it attends to each instance)")
        rows = pd.DataFrame(
            {ROLE_TITLES.get(r, r): computed[r].matrix[highlight] for r in roles},
            index=[f"#{k}" for k in range(len(first.order))],
        ).T.reset_index(names="model")
        widgets.show_table(rows.round(3), f"relation_row_{highlight}.csv", "instance_row")

st.subheader("Over the test split, by object size")
s1, s2 = st.columns([1, 3])
with s1:
    count = st.slider("Images", 5, 100, 20, 5, key="instance_summary_images")
    show = st.toggle("Compute the split-wide summary", value=False, key="instance_summary")
    if "teacher" not in roles:
        st.caption("The summary compares each student with the teacher; the teacher is included whatever is picked.")


@st.cache_data(show_spinner="Running the detectors over the test split …", max_entries=16)
def summary(root: str, preset: str, seed: int, stamp: float, level: str, roles: tuple[str, ...], count: int):
    models = context.model_set(root, preset, seed, stamp)
    return instances.relation_summary(
        models, context.test_split(root, preset, stamp), level, max_images=count, roles=roles
    )


@st.cache_data(show_spinner=False, max_entries=16)
def summary_png(
    root: str, preset: str, seed: int, stamp: float, level: str, roles: tuple[str, ...], count: int
) -> bytes:
    return widgets.png_of(vinst.plot_relation_summary(summary(root, preset, seed, stamp, level, roles, count)))


if show:
    everyone = tuple(dict.fromkeys(["teacher", *roles]))
    frame = summary(ctx.root_key, ctx.preset, ctx.seed, ctx.stamp, level, everyone, count)
    with s2:
        widgets.show_png(
            summary_png(ctx.root_key, ctx.preset, ctx.seed, ctx.stamp, level, everyone, count),
            "relation_summary.png",
            "instance_summary",
        )
    by_size = frame.groupby(["role", "size"])[["l1", "kl"]].agg(["mean", "count"]).round(4)
    by_size.columns = [" ".join(c) for c in by_size.columns]
    widgets.show_table(by_size.reset_index(), f"relation_summary_{level}.csv", "instance_summary")

st.subheader("What the relations carry: class structure and agreement")
carried = relation_table(ctx.report)
if carried is None:
    st.info(
        "This report has no relation metrics (reports written before they existed); rebuild it with "
        f"`drkd-viz pipeline --preset {ctx.preset} --out {ctx.root}` (cached runs are reused)."
    )
else:
    st.caption(
        "Every model's own features, related by the same parameter-free relation (softmax over the other instances "
        "of cos / 0.1), over the report's split. AUC: how well a relation ranks pairs of one class above pairs of "
        "two classes (0.5: no class information). Row L1 (0–2) and Spearman ρ: each instance's row against the "
        "teacher's, by object size (lower L1, higher ρ: closer to the teacher). Means over seeds."
    )
    widgets.show_table(carried.round(3), f"relation_metrics_{ctx.preset}.csv", "instance_carried")
