"""Errors: where each model loses AP50 (TIDE's error types, by object size), what distillation changes against
the baseline, confusion matrices, and the test images where a student differs most from the baseline."""

from __future__ import annotations

import streamlit as st
from _shared import context, widgets

from drkd_viz.analysis import detection_errors as de
from drkd_viz.tide import ERROR_LABELS, ERROR_TYPES, SPECIAL_TYPES
from drkd_viz.viz import charts
from drkd_viz.viz.errors import plot_image_errors

ctx = context.current()
report = ctx.report
models = list(report["models"])
students = [m for m in models if m not in ("teacher", "baseline")]
st.title("Errors")
st.caption(
    f"Report `{ctx.preset}`, {report.get('split', 'test')} split, from the stored detections of every model and "
    "seed. TIDE (Bolya et al., ECCV 2020) names one cause for each false positive and missed object at IoU 0.5 "
    "and measures the AP50 that fixing all errors of one type gives back: **classification** (right place, wrong "
    "class), **localisation** (right class, IoU 0.1–0.5), **class + box** (both wrong), **duplicate** (its object "
    "was already found), **background** (overlaps nothing), **missed** (no detection aimed at the object). "
    "True positives and AP are COCOeval's own; sizes follow COCO's area ranges."
)


# each run's breakdown is cached by the analysis (per detections file version), so only the first visit waits
bar = st.progress(0.0, text="Analysing the errors of every run …")


def advance(done: int, total: int) -> None:
    bar.progress(done / total, text=f"Analysing the errors of every run … {done}/{total}")


frame = de.error_table(ctx.root_key, report, progress=advance)
bar.empty()
left, right = st.columns([1, 3])
size = left.radio("Object size", ["small", "medium", "large", "all"], key="errors_size")
shown = right.multiselect("Models", models, default=models, key="errors_models")

st.subheader("Where AP50 goes")
picked = st.altair_chart(
    charts.error_breakdown_chart(frame[frame["model"].isin(shown)], size, selectable=True),
    on_select="rerun",
    key="errors_chart",
    width="stretch",
)
st.caption(
    "Hover a bar for its numbers; click one to show the images where that model makes that error (below). "
    "The chart's menu (⋯) saves it as PNG or SVG."
)
wide = frame[frame["size"] == size].pivot_table(index="model", columns="error", values="recovered") * 100
wide = wide.reindex(index=[m for m in models if m in wide.index], columns=[*ERROR_TYPES, *SPECIAL_TYPES])
wide.columns = [ERROR_LABELS[c] for c in wide.columns]
widgets.show_table(wide.round(2).reset_index(), f"errors_{size}.csv", "errors_table")

if "baseline" in models and students:
    st.subheader("What distillation changes")
    gains = de.error_gains(frame)
    for student in students:
        row = gains[(gains["model"] == student) & (gains["size"] == size) & (gains["error"] == "miss")]
        if not row.empty:
            value = -100 * float(row["difference"].iloc[0])
            verb = "recovers" if value >= 0 else "loses"
            ci = row[["ci_low", "ci_high"]].iloc[0] * -100
            interval = "" if ci.isna().any() else f" (95 % CI [{min(ci):+.2f}, {max(ci):+.2f}])"
            st.markdown(
                f"**{student}** {verb} **{abs(value):.2f}** AP50 points of missed {size} objects against the "
                f"baseline{interval}, over {int(row['seeds'].iloc[0])} seed(s)."
            )
    st.altair_chart(charts.error_gains_chart(gains[gains["model"].isin(shown)], size), width="stretch")
    widgets.show_table(gains[gains["size"] == size].round(4), f"error_gains_{size}.csv", "errors_gains")

st.subheader("Confusion matrices")
a, b, c = st.columns(3)
model = a.selectbox("Model", models, index=models.index(students[-1]) if students else 0, key="errors_cm_model")
threshold = b.slider("Score threshold", 0.05, 0.95, 0.5, 0.05, key="errors_threshold")
versus = c.toggle("Difference to the baseline", value=False, key="errors_cm_diff", disabled="baseline" not in models)
seed = ctx.seed if ctx.seed in report["models"][model]["seeds"] else int(report["models"][model]["seeds"][0])


@st.cache_data(show_spinner="Counting …", max_entries=32)
def confusion(root: str, preset: str, stamp: float, role: str, seed: int, threshold: float, size: str):
    rep = context.cached_report(root, preset, stamp)
    return de.model_confusion(root, role, seed, rep, score_threshold=threshold, size=size)


matrix = confusion(ctx.root_key, ctx.preset, ctx.stamp, model, seed, threshold, size)
reference = confusion(ctx.root_key, ctx.preset, ctx.stamp, "baseline", seed, threshold, size) if versus else None
title = f"{model}, seed {seed}, {size} objects, score ≥ {threshold:.2f}" + (" − baseline" if versus else "")
st.altair_chart(charts.confusion_chart(matrix, reference, title))
st.caption(
    "Rows: what was there (the last row: detections of nothing); columns: what the model said (the last column: "
    "nothing, a missed object). Each class row is divided by its number of objects; the background row by its "
    "own total, so it shows what the false positives were called."
)
widgets.show_table(matrix.table(normalised=False).reset_index(), f"confusion_{model}_{size}.csv", "errors_cm")

st.subheader("Images where a student differs most from the baseline")
if "baseline" not in models or not students:
    st.info("The report needs a baseline and a student to compare.")
    st.stop()
seeded = [m for m in students if ctx.seed in report["models"][m]["seeds"]]
if not seeded:
    st.info(f"No student of this report has seed {ctx.seed}.")
    st.stop()
selection = (picked or {}).get("selection", {}).get(charts.SELECT_ERROR) or []
chosen_error = selection[0]["error"] if selection else None
d, e = st.columns(2)
student = d.selectbox("Student", seeded, index=seeded.index("drkd") if "drkd" in seeded else 0, key="errors_student")
limit = e.slider("Images per direction", 1, 6, 3, key="errors_limit")
roles = [r for r in ("teacher", "baseline", student) if r in models]
changes = de.image_changes(ctx.root_key, student, seed=ctx.seed, report=report, score_threshold=threshold, size=size)
results = {r: de.model_errors(ctx.root_key, r, ctx.seed, report)[size] for r in roles}
if chosen_error is not None:
    who = selection[0]["model"]
    kind = ERROR_LABELS[chosen_error]
    st.info(f"Filtered by the chart: images where `{who}` makes **{kind}** errors (click the bar again to clear).")
    mine = de.model_errors(ctx.root_key, who, ctx.seed if ctx.seed in report["models"][who]["seeds"] else 0, report)[
        size
    ]
    if chosen_error == "miss":
        hit = mine.objects[mine.objects["outcome"] == "miss"]["image_id"]
    else:
        dets = mine.detections
        hit = dets[(dets["outcome"] == chosen_error) & (dets["score"] >= threshold)]["image_id"]
    changes = changes[changes["image_id"].isin(set(hit))]
better = changes[changes["net"] > 0].sort_values(["net", "change"], ascending=False, kind="stable")
worse = changes[changes["net"] < 0].sort_values(["net", "change"], ascending=True, kind="stable")
st.write(
    f"At score ≥ {threshold:.2f}, {size} objects: `{student}` does better than the baseline on **{len(better)}** "
    f"test images and worse on **{len(worse)}** (objects found or lost, false positives added or removed)."
)
dataset = context.test_split(ctx.root_key, ctx.preset, ctx.stamp)
tabs = st.tabs([f"{student} better", f"{student} worse"])
for tab, rows, label in zip(tabs, (better, worse), ("better", "worse"), strict=True):
    with tab:
        fig = plot_image_errors(dataset, rows, results, threshold, limit, f"{student} {label} than the baseline")
        widgets.show_png(widgets.png_of(fig), f"images_{label}_{student}_{size}.png", f"errors_{label}")
        widgets.show_table(rows, f"images_{label}_{student}_{size}.csv", f"errors_{label}_rows")
