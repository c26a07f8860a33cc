"""Small objects: AP by size with intervals, precision–recall curves per size, per-class gains, and the
objects DRKD finds that the baseline misses — and the reverse."""

from __future__ import annotations

import streamlit as st
from _shared import context, widgets

from drkd_viz.analysis import small_objects as so
from drkd_viz.viz import charts
from drkd_viz.viz import small_objects as vso

ctx = context.current()
report = ctx.report
models = list(report["models"])
students = [m for m in models if m not in ("teacher", "baseline")]
st.title("Small objects")
st.caption(
    f"Report `{ctx.preset}`, test split; models of seed {ctx.seed} where curves and objects come from the stored "
    "test detections (`RUN/eval/test/detections.json`). Sizes by COCO's area thresholds (small < 32², large > 96²)."
)


@st.cache_data(show_spinner=False, max_entries=16)
def ap_table(root: str, preset: str, stamp: float):
    return so.ap_by_size(context.cached_report(root, preset, stamp))


@st.cache_data(show_spinner=False, max_entries=32)
def ap_figure(root: str, preset: str, stamp: float, shown: tuple[str, ...]) -> bytes:
    frame = ap_table(root, preset, stamp)
    return widgets.png_of(vso.plot_ap_by_size(frame[frame["model"].isin(shown)]))


st.subheader("AP by object size")
shown = st.multiselect("Models", models, default=models, key="small_models")
if shown:
    table = ap_table(ctx.root_key, ctx.preset, ctx.stamp)
    table = table[table["model"].isin(shown)]
    st.altair_chart(charts.ap_by_size_chart(table), width="stretch")
    widgets.png_download(ap_figure(ctx.root_key, ctx.preset, ctx.stamp, tuple(shown)), "ap_by_size.png", "small_ap")
    wide = table.pivot(index="model", columns="size", values=["mean", "ci_low", "ci_high"]) * 100  # percent
    wide = wide.reindex(index=shown, columns=[(v, z) for z in so.SIZE_KEYS for v in ("mean", "ci_low", "ci_high")])
    wide.columns = [f"AP {z} (%)" if v == "mean" else f"{z} CI {v[3:]}" for v, z in wide.columns]
    table = wide.reset_index()
    widgets.show_table(table.round(3), "ap_by_size.csv", "small_ap")

st.subheader("Precision–recall curves")
IOUS = {"mean over IoU 0.50:0.95 (AP)": None, "IoU 0.50 (AP50)": 0.5, "IoU 0.75 (AP75)": 0.75}
roles_available = [m for m in ("teacher", "baseline", "feature_imitation", "pkd", "drkd") if m in models]
left, middle, right = st.columns(3)
area = left.selectbox("Object size", ["small", "medium", "large", "all"], key="small_area")
iou_name = middle.selectbox("IoU", list(IOUS), key="small_iou")
roles = right.multiselect(
    "Models", roles_available, default=[r for r in ("teacher", "baseline", "drkd") if r in models], key="small_roles"
)


@st.cache_data(show_spinner="Evaluating the stored detections …", max_entries=32)
def curves(root: str, preset: str, stamp: float, roles: tuple[str, ...], seed: int, iou: float | None):
    return so.pr_curves(root, roles, seed=seed, iou=iou, report=context.cached_report(root, preset, stamp))


@st.cache_data(show_spinner=False, max_entries=64)
def curves_figure(
    root: str, preset: str, stamp: float, roles: tuple[str, ...], seed: int, iou: float | None, area: str
) -> bytes:
    return widgets.png_of(vso.plot_pr_curves(curves(root, preset, stamp, roles, seed, iou), area))


if roles:
    frame = curves(ctx.root_key, ctx.preset, ctx.stamp, tuple(roles), ctx.seed, IOUS[iou_name])
    st.altair_chart(charts.pr_curves_chart(frame, area), width="stretch")
    png = curves_figure(ctx.root_key, ctx.preset, ctx.stamp, tuple(roles), ctx.seed, IOUS[iou_name], area)
    widgets.png_download(png, f"pr_{area}.png", "small_pr")

st.subheader("Per-class gains over the baseline")
method = st.selectbox("Method", students, index=students.index("drkd") if "drkd" in students else 0, key="small_method")


@st.cache_data(show_spinner=False, max_entries=32)
def gains(root: str, preset: str, stamp: float, method: str):
    return so.per_class_gains(context.cached_report(root, preset, stamp), method)


@st.cache_data(show_spinner=False, max_entries=32)
def gains_figure(root: str, preset: str, stamp: float, method: str) -> bytes:
    return widgets.png_of(vso.plot_class_gains(gains(root, preset, stamp, method)))


widgets.show_png(gains_figure(ctx.root_key, ctx.preset, ctx.stamp, method), f"class_gains_{method}.png", "small_gain")
widgets.show_table(gains(ctx.root_key, ctx.preset, ctx.stamp, method), f"class_gains_{method}.csv", "small_gain")

st.subheader("Objects one model finds and the other misses")
st.caption(
    "Both directions are shown: distillation also loses objects the baseline found, and a gain is only "
    "believable next to its losses. An object counts as found when a detection of its class overlaps it with "
    "IoU ≥ 0.5 at the chosen score threshold."
)
a, b, c, d = st.columns(4)
size = a.selectbox("Size", ["small", "medium", "large", "all"], key="small_gallery_size")
# the gallery compares runs of the chosen seed: an ablation trained on fewer seeds is offered on those only
seeded = [m for m in students if ctx.seed in report["models"][m]["seeds"]]
other = b.selectbox(
    "Compared with the baseline",
    seeded,
    index=seeded.index(method) if method in seeded else 0,
    key="small_gallery_method",
)
threshold = c.slider("Score threshold", 0.05, 0.95, 0.5, 0.05, key="small_threshold")
limit = d.slider("Objects per row", 2, 12, 6, 1, key="small_limit")


@st.cache_data(show_spinner="Matching detections to objects …", max_entries=32)
def found_missed(root: str, preset: str, stamp: float, seed: int, size: str, method: str, threshold: float):
    report = context.cached_report(root, preset, stamp)
    rows = so.found_vs_missed(root, seed=seed, size=size, method=method, score_threshold=threshold, report=report)
    rows.attrs["size"] = size
    return rows


@st.cache_data(show_spinner=False, max_entries=32)
def gallery(
    root: str, preset: str, stamp: float, seed: int, size: str, method: str, threshold: float, limit: int
) -> bytes:
    rows = found_missed(root, preset, stamp, seed, size, method, threshold)
    return widgets.png_of(vso.plot_found_missed(context.test_split(root, preset, stamp), rows, limit))


rows = found_missed(ctx.root_key, ctx.preset, ctx.stamp, ctx.seed, size, other, threshold)
counts = rows["case"].value_counts()
gained_case, lost_case = f"{other} found, baseline missed", f"baseline found, {other} missed"
st.write(
    f"**{counts.get(gained_case, 0)}** {size} test objects found by `{other}` and missed by the baseline; "
    f"**{counts.get(lost_case, 0)}** found by the baseline and missed by `{other}`."
)
png = gallery(ctx.root_key, ctx.preset, ctx.stamp, ctx.seed, size, other, threshold, limit)
widgets.show_png(png, f"found_missed_{size}_{other}.png", "small_gallery")
widgets.show_table(rows.astype({"bbox": str}), f"found_missed_{size}_{other}.csv", "small_gallery")

st.subheader("One image, every model")
images = list(dict.fromkeys(rows["image_id"]))
if not images:
    st.info("No image with such an object at these settings.")
    st.stop()
image_id = st.selectbox("Test image (id)", images, key="small_image")
compared = [r for r in ("teacher", "baseline", other) if r in models]


@st.cache_data(show_spinner=False, max_entries=64)
def image_png(
    root: str,
    preset: str,
    stamp: float,
    seed: int,
    image_id: int,
    roles: tuple[str, ...],
    size: str,
    threshold: float,
):
    from drkd_viz.analysis.models import image_and_boxes

    dataset = context.test_split(root, preset, stamp)
    image, _, _ = image_and_boxes(dataset, dataset.ids.index(image_id))
    report = context.cached_report(root, preset, stamp)
    matches = {r: so.match_objects(root, r, seed, score_threshold=threshold, report=report) for r in roles}
    dets = {r: so.image_detections(root, r, image_id, seed, score_threshold=threshold, report=report) for r in roles}
    return widgets.png_of(vso.plot_image_matches(image, image_id, matches, dets, size=size))


png = image_png(ctx.root_key, ctx.preset, ctx.stamp, ctx.seed, int(image_id), tuple(compared), size, threshold)
widgets.show_png(png, f"image_{image_id}_matches.png", "small_image")
