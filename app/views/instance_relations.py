"""Instance relations: the relation matrices of the ground-truth instances for the three models and their
differences; an instance picked here is outlined on the image and in every matrix; the split-wide summary
of how close each student's rows come to the teacher's, by object size."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from _shared import context, widgets

from drkd_viz.analysis import instances
from drkd_viz.analysis.models import OPTIONAL_ROLES, ROLE_TITLES, instance_areas
from drkd_viz.experiments.relation_report import agreement_sentence, relation_metric_frame, relation_table
from drkd_viz.viz import instances as vinst
from drkd_viz.viz import relation_charts as rcharts

UNIFORM_ENTROPY = 0.9  # rows above this share of their maximum entropy say almost nothing

ctx = context.current()
st.title("Instance relations")
st.caption(
    "Row i of a relation matrix A: how instance i relates to the other instances of the image (rows sum to 1). "
    "Instances are ordered by class, then size (largest first), so a relation that carries class structure shows "
    "bright blocks on the diagonal (outlined). Ground-truth instances only, so the image comes from the test split."
)
models = context.models_of(ctx)
dataset = context.dataset_of(ctx)
class_names = dataset.class_names
has_learned = bool(models.units["drkd"].relations)
RELATION_KINDS = {
    "anchored": "anchored: cos / 0.1 of the model's own features (what L_IRA distils)",
    "learned": "learned: the DRKD run's relation modules (the paper's A)",
}

left, right = st.columns([1, 3])
with left:
    picked = widgets.image_picker(ctx, "instance", allow_upload=False)
    level = st.selectbox("FPN level", models.instance_levels(), key="instance_level")
    roles = st.multiselect(
        "Models", models.roles, default=[r for r in models.roles if r not in OPTIONAL_ROLES], key="instance_roles"
    )
    kind = st.radio(
        "Relation",
        list(RELATION_KINDS) if has_learned else ["anchored"],
        format_func=RELATION_KINDS.get,
        key="instance_relation",
    )
if not roles:
    st.info("Pick at least one model.")
    st.stop()


@st.cache_data(show_spinner="Running the detectors …", max_entries=64)
def relations(
    root: str, preset: str, seed: int, stamp: float, index: int, level: str, roles: tuple[str, ...], kind: str, _picked
):
    areas = instance_areas(context.test_split(root, preset, stamp), index)
    return instances.relation_matrices(
        context.model_set(root, preset, seed, stamp),
        _picked.image,
        _picked.boxes,
        level,
        areas,
        roles,
        labels=_picked.labels,
        relation=kind,
    )


key = (ctx.root_key, ctx.preset, ctx.seed, ctx.stamp, picked.index, level, tuple(roles), kind)
computed = relations(*key, picked)
first = computed[roles[0]]
n = len(first.order)
if kind == "learned":
    st.caption(
        "The learned relation of the paper: its entropy and AUC (below) say whether it carries anything. A row "
        "near 1/N everywhere (entropy / log N near 1) is uniform: it relates every instance alike, and an AUC near "
        "0.5 means it cannot tell instances of one class from the others."
    )
elif not has_learned:
    st.caption(
        f"The DRKD run {models.run_dirs['drkd'].name} has no learned relation module (its L_IR is off): every matrix "
        "is the anchored relation of the model's own features, softmax over the other instances of cos / 0.1 "
        "(the diagonal left out), the target its L_IRA distils."
    )
labels = {None: "none"} | {
    k: f"#{k} — {class_names[int(first.labels[k])]}, {size}, {area:.0f} px²"
    for k, (size, area) in enumerate(zip(first.sizes, first.areas, strict=True))
}
CHART_KEY = "instance_matrices_chart"


def take_chart_pick() -> None:
    """A click on a matrix cell picks its row instance (and its column as the partner); one on the strip, the
    instance: both land in the instance select box, so the two stay one choice. Each selection keeps its last
    point, so the one that changed is the click."""
    event = st.session_state.get(CHART_KEY)
    pair, single = rcharts.selected(event, rcharts.SELECT_PAIR), rcharts.selected(event, rcharts.SELECT_INSTANCE)
    last_pair, last_single = st.session_state.get("instance_chart_last", (None, None))
    if pair is not None and pair != last_pair:
        st.session_state["instance_pick"] = int(pair["row"])
        st.session_state["instance_partner"] = int(pair["col"])
    elif single is not None and single != last_single:
        st.session_state["instance_pick"] = int(single["row"])
        st.session_state["instance_partner"] = None
    st.session_state["instance_chart_last"] = (pair, single)


if "instance_pick" not in st.session_state or st.session_state["instance_pick"] not in labels:
    st.session_state["instance_pick"] = 0 if n else None  # start on the first instance (another image: its first)
with left:
    highlight = st.selectbox("Highlight instance", list(labels), format_func=labels.get, key="instance_pick")
partner = st.session_state.get("instance_partner")
partner = partner if partner in labels and partner != highlight else None


@st.cache_data(show_spinner=False, max_entries=256)
def matrices_spec(root, preset, seed, stamp, index, level, roles, kind, highlight, _picked) -> dict:
    """The matrices chart as a Vega-Lite dict, built once per (image, level, models, relation, highlight)."""
    rel = relations(root, preset, seed, stamp, index, level, roles, kind, _picked)
    return rcharts.relation_matrices_chart(rel, class_names, highlight=highlight).to_dict(validate=False)


@st.cache_data(show_spinner=False, max_entries=256)
def image_png(root, preset, seed, stamp, index, level, roles, kind, highlight, partner, _picked) -> bytes:
    rel = relations(root, preset, seed, stamp, index, level, roles, kind, _picked)
    first = rel[roles[0]]
    return widgets.png_of(vinst.plot_instances(_picked.image, first, class_names, highlight, partner))


with right:
    if n < 2:
        st.info("This image has fewer than two instances: nothing to relate. Pick another image.")
    else:
        st.vega_lite_chart(matrices_spec(*key, highlight, picked), on_select=take_chart_pick, key=CHART_KEY)
        st.caption(
            "Hover a cell for both instances and the value; click a cell to outline its pair on the image, or an "
            "instance of the class strip (left) to outline it. Double-click clears. One colour scale for all models."
        )
with left:
    widgets.show_png(image_png(*key, highlight, partner, picked), f"instances_{level}.png", "instance_image")

if n >= 2:
    m1, m2 = st.columns([2, 3])
    with m1:
        st.markdown("**This image: what each model's relations carry**")
        per_image = instances.image_relation_metrics(computed)
        teacher_entropy = per_image.set_index("role")["entropy"].get("teacher")
        if teacher_entropy is not None and teacher_entropy > UNIFORM_ENTROPY:
            st.warning(
                f"The teacher's rows here are nearly uniform (entropy {teacher_entropy:.2f} of its maximum): this "
                "relation relates every instance alike, so it has little to teach."
            )
        per_image.insert(0, "model", per_image.pop("role").map(lambda r: ROLE_TITLES.get(r, r)))
        per_image = per_image.dropna(axis=1, how="all")
        widgets.show_table(per_image.round(3), f"relation_image_metrics_{level}.csv", "instance_image_metrics")
        st.caption(
            "AUC: how well the matrix ranks pairs of one class above pairs of two (0.5: no class information; "
            "empty with one class only). Entropy: of the rows, over its maximum (1: uniform rows that relate every "
            "instance alike). Row L1 (0–2): a student's rows against the teacher's, by object size."
        )
    with m2:
        if highlight is not None:
            st.markdown(f"**Row of instance #{highlight}** (how it relates to each instance)")
            rows = pd.DataFrame(
                {ROLE_TITLES.get(r, r): computed[r].matrix[highlight] for r in roles},
                index=[f"#{k}" for k in range(n)],
            ).T.reset_index(names="model")
            widgets.show_table(rows.round(3), f"relation_row_{highlight}.csv", "instance_row")


@st.cache_data(show_spinner=False, max_entries=16)
def carried_spec(root: str, preset: str, stamp: float, metric: str) -> dict:
    """A split-wide relation metric's chart (it depends on the report only) as a Vega-Lite dict."""
    frame = relation_metric_frame(context.cached_report(root, preset, stamp))
    return rcharts.relation_metrics_chart(frame, metric).to_dict(validate=False)


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
    sentence = agreement_sentence(ctx.report)
    if sentence:
        st.markdown(sentence)
    metric_frame = relation_metric_frame(ctx.report)
    c1, c2 = st.columns(2)
    for column, metric in ((c1, "auc"), (c2, "row_l1")):
        if (metric_frame["metric"] == metric).any():
            column.vega_lite_chart(carried_spec(ctx.root_key, ctx.preset, ctx.stamp, metric), key=f"instance_{metric}")
    if len(metric_frame) and metric_frame["seeds"].max() < 2:
        st.caption("One seed in this report: no intervals (the `study` report has five).")

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
