"""Attribution: which pixels make each model call a chosen box its class (Captum: Integrated Gradients,
saliency, Grad-CAM), the models side by side."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch
from _shared import context, widgets

from drkd_viz.analysis import attribution
from drkd_viz.analysis.models import OPTIONAL_ROLES, ROLE_TITLES
from drkd_viz.data.statistics import size_bucket
from drkd_viz.errors import UserError
from drkd_viz.viz import attribution as vattr

BOX_LEVEL = "auto"  # Grad-CAM on the FPN level the detector reads the chosen box from
ctx = context.current()
st.title("Attribution")
st.caption(
    "The score is each model's probability of the chosen class for the fixed box (Faster R-CNN: RoIAlign of the box "
    "→ box head → softmax), so the maps answer “which pixels make this model call this box that class?” for every "
    "model on the same box. Integrated Gradients is signed (baseline: a black image); saliency and Grad-CAM are ≥ 0."
)
MAX_DETECTIONS = 20  # the best-scoring detections offered
models = context.models_of(ctx)
class_names = context.dataset_of(ctx).class_names

left, right = st.columns([1, 3])
with left:
    picked = widgets.image_picker(ctx, "attr")
if picked is None:
    st.stop()


@st.cache_data(show_spinner="Detecting …", max_entries=64)
def detections(root: str, preset: str, seed: int, stamp: float, image_key: str, role: str, _picked) -> pd.DataFrame:
    model = context.model_set(root, preset, seed, stamp).models[role]
    with torch.no_grad():
        out = model([_picked.image])[0]
    boxes = out["boxes"].tolist()
    return pd.DataFrame(
        {"box": [tuple(b) for b in boxes], "label": out["labels"].tolist(), "score": out["scores"].tolist()}
    )


with left:
    sources = ["a detection", "a ground-truth object"] if picked.has_truth else ["a detection"]
    source = st.radio("Box", sources, horizontal=True, key="attr_box_from")
    if source == "a detection":
        role_for_boxes = st.selectbox(
            "Detections of",
            models.roles,
            index=models.roles.index("drkd"),
            format_func=ROLE_TITLES.get,
            key="attr_detector",
        )
        found = detections(ctx.root_key, ctx.preset, ctx.seed, ctx.stamp, picked.key, role_for_boxes, picked)
        found = found.sort_values("score", ascending=False).head(MAX_DETECTIONS).reset_index(drop=True)
        candidates = [(row.box, int(row.label), f"{row.score:.2f}") for row in found.itertuples()]
    else:
        candidates = [
            (tuple(b), int(lab), "ground truth")
            for b, lab in zip(picked.boxes.tolist(), picked.labels.tolist(), strict=True)
        ]
    if not candidates:
        st.info("This model detects nothing in this image: pick a ground-truth object or another image.")
        st.stop()

    def describe(k: int) -> str:
        (x1, y1, x2, y2), label, score = candidates[k]
        return (
            f"#{k} {class_names[label]} ({score}), {size_bucket((x2 - x1) * (y2 - y1))}, {x2 - x1:.0f}×{y2 - y1:.0f} px"
        )

    chosen = st.selectbox("Box to explain", range(len(candidates)), format_func=describe, key="attr_box")
    roles = st.multiselect(
        "Models", models.roles, default=[r for r in models.roles if r not in OPTIONAL_ROLES], key="attr_roles"
    )
    methods = st.multiselect(
        "Methods",
        list(attribution.METHODS),
        default=["saliency", "gradcam"],  # Integrated Gradients costs `steps` backward passes per model
        help="Integrated Gradients needs one backward pass per step and model: about steps× slower than saliency.",
        format_func=attribution.METHOD_TITLES.get,
        key="attr_methods",
    )
    level_choice = st.selectbox(
        "Grad-CAM level",
        [BOX_LEVEL, *models.pixel_levels()],
        format_func=lambda v: "the box's level (as the detector reads it)" if v == BOX_LEVEL else v,
        help="Faster R-CNN pools each box from one FPN level (small boxes from P2); Grad-CAM on any other level is "
        "zero, because FPN outputs do not feed each other.",
        key="attr_level",
    )
    steps = st.select_slider("Integrated Gradients steps", [8, 16, 32, 64], value=16, key="attr_steps")
    zooms = {"whole image": None, "3× the box": 3.0, "6× the box": 6.0}
    zoom = st.selectbox("Zoom", list(zooms), index=1, key="attr_zoom")
    opacity = st.slider("Map opacity", 0.0, 1.0, 0.6, 0.05, key="attr_opacity")
if not roles or not methods:
    st.info("Pick at least one model and one method.")
    st.stop()
box, label, _ = candidates[chosen]


@st.cache_data(show_spinner=False, max_entries=256)
def level_of_box(root, preset, seed, stamp, image_key, box, _picked) -> str:
    # teacher and students share the family and input size, so one model's level mapping serves all
    model = next(iter(context.model_set(root, preset, seed, stamp).models.values()))
    return attribution.box_level(model, _picked.image, torch.tensor(box))


level = (
    level_of_box(ctx.root_key, ctx.preset, ctx.seed, ctx.stamp, picked.key, tuple(box), picked)
    if level_choice == BOX_LEVEL
    else level_choice
)


@st.cache_data(show_spinner="Attributing (gradients through every model) …", max_entries=64)
def maps(root, preset, seed, stamp, image_key, box, label, roles, methods, level, steps, _picked):
    model_set = context.model_set(root, preset, seed, stamp)
    chosen = {r: model_set.models[r] for r in roles}
    box_t = torch.tensor(box)
    result = attribution.attribute_models(chosen, _picked.image, box_t, label, methods, level, steps)
    scores = attribution.box_scores(chosen, _picked.image, box_t, label)
    black = attribution.box_scores(chosen, torch.zeros_like(_picked.image), box_t, label)
    return result, scores, black


key = (
    ctx.root_key,
    ctx.preset,
    ctx.seed,
    ctx.stamp,
    picked.key,
    tuple(box),
    label,
    tuple(roles),
    tuple(methods),
    level,
    steps,
)
try:
    computed, scores, black = maps(*key, picked)
except UserError as exc:
    st.error(str(exc))
    st.stop()


@st.cache_data(show_spinner=False, max_entries=128)
def maps_png(
    root, preset, seed, stamp, image_key, box, label, roles, methods, level, steps, zoom, opacity, _picked
) -> bytes:
    result, scores, _ = maps(root, preset, seed, stamp, image_key, box, label, roles, methods, level, steps, _picked)
    figure = vattr.plot_attributions(
        _picked.image, result, torch.tensor(box), scores, class_names[label], level, opacity=opacity, context=zoom
    )
    return widgets.png_of(figure)


with right:
    png = maps_png(*key, zooms[zoom], opacity, picked)
    widgets.show_png(png, f"attribution_{class_names[label]}.png", "attr_maps")
    rows = []
    for role in roles:
        row = {"model": ROLE_TITLES.get(role, role), f"score of {class_names[label]}": scores[role]}
        if "integrated_gradients" in methods:
            row["IG sum"] = float(computed[role]["integrated_gradients"].sum())
            row["score − score(black)"] = scores[role] - black[role]
        rows.append(row)
    widgets.show_table(pd.DataFrame(rows).round(4), "attribution_scores.csv", "attr_scores")
    if "integrated_gradients" in methods:
        st.caption(
            "Completeness check: Integrated Gradients sums to score(image) − score(black image) up to the quadrature "
            f"error of {steps} steps; a large gap means more steps are needed."
        )
