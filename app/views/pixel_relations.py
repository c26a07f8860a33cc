"""Pixel relations: where the FPN feature x and the graph-reasoning unit's relation feature G(x) put their
energy, for the models side by side; the graph-node explorer; the split-wide foreground contrast."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from _shared import context, widgets

from drkd_viz.analysis import graph, pixel
from drkd_viz.analysis.models import OPTIONAL_ROLES, ROLE_TITLES
from drkd_viz.viz import pixel as vpixel
from drkd_viz.viz import pixel_charts as pcharts
from drkd_viz.viz import relation_charts as rcharts


def default_cell(maps: pixel.AffinityMaps) -> tuple[int, int]:
    """The cell at the centre of the smallest ground-truth box (a small object is where relations matter most);
    the image's centre without boxes."""
    gh, gw = maps.grid
    if not len(maps.boxes):
        return gh // 2, gw // 2
    areas = (maps.boxes[:, 2] - maps.boxes[:, 0]) * (maps.boxes[:, 3] - maps.boxes[:, 1])
    x1, y1, x2, y2 = maps.boxes[int(areas.argmin())]
    return min(int((y1 + y2) / 2), gh - 1), min(int((x1 + x2) / 2), gw - 1)


ctx = context.current()
st.title("Pixel relations")
st.caption(
    "Heatmap of a feature: its per-pixel L2 norm over channels, upsampled to the image and divided by its maximum. "
    "Contrast: mean inside the ground-truth boxes / mean outside (above 1: the map focuses on the objects). The "
    "teacher is seen through the DRKD run's teacher-side units, every student through the DRKD student's units."
)
models = context.models_of(ctx)

left, right = st.columns([1, 2])
with left:
    picked = widgets.image_picker(ctx, "pixel")
    level = st.selectbox("FPN level", models.pixel_levels(), key="pixel_level")
    roles = st.multiselect(
        "Models", models.roles, default=[r for r in models.roles if r not in OPTIONAL_ROLES], key="pixel_roles"
    )
    opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="pixel_opacity")
if picked is None:
    st.stop()
if not roles:
    st.info("Pick at least one model.")
    st.stop()


@st.cache_data(show_spinner="Running the detectors …", max_entries=64)
def maps(root: str, preset: str, seed: int, stamp: float, image_key: str, level: str, roles: tuple[str, ...], _picked):
    return pixel.pixel_maps(context.model_set(root, preset, seed, stamp), _picked.image, _picked.boxes, level, roles)


@st.cache_data(show_spinner=False, max_entries=256)
def maps_png(root, preset, seed, stamp, image_key, level, roles, opacity: float, _picked) -> bytes:
    computed = maps(root, preset, seed, stamp, image_key, level, roles, _picked)
    return widgets.png_of(vpixel.plot_pixel_maps(_picked.image, computed, _picked.boxes, opacity=opacity))


key = (ctx.root_key, ctx.preset, ctx.seed, ctx.stamp, picked.key, level, tuple(roles))
with right:
    widgets.show_png(maps_png(*key, opacity, picked), f"pixel_{level}.png", "pixel_maps")
    computed = maps(*key, picked)
    if picked.has_truth:
        table = pd.DataFrame(
            [
                {
                    "model": ROLE_TITLES.get(r, r),
                    "feature contrast": m.feature_contrast,
                    "relation contrast": m.relation_contrast,
                }
                for r, m in computed.items()
            ]
        ).dropna(axis=1, how="all")  # no relation contrast without graph units
        widgets.show_table(table.round(3), f"contrast_{level}.csv", "pixel_contrast")
    else:
        st.caption("An uploaded image has no ground truth: no contrast to compute.")

st.subheader("The global relation of a pixel")
st.caption(
    "Click a cell of the image (left): each model's features relate it to every other cell (cosine of the "
    "channel-centred features, averaged onto one grid shared by all models; the parameter-free relation L_PA "
    "distils). The second row shows each student's map minus the teacher's (red: relates more than the teacher, "
    "blue: less). Pick a cell on a small object and see which students relate it to its own kind."
)


@st.cache_data(show_spinner="Relating every cell to every other …", max_entries=32)
def affinity(root: str, preset: str, seed: int, stamp: float, image_key: str, level: str, roles, cells: int, _picked):
    models = context.model_set(root, preset, seed, stamp)
    return pixel.affinity_maps(models, _picked.image, level, _picked.boxes, roles, cells)


PIXEL_CHART = "affinity_picker"


def take_pixel_pick() -> None:
    point = rcharts.selected(st.session_state.get(PIXEL_CHART), pcharts.SELECT_PIXEL)
    if point is not None:
        st.session_state["affinity_cell"] = (int(point["row"]), int(point["col"]))


@st.fragment  # a click redraws this section only, not the heatmaps above
def affinity_explorer(picked: widgets.Picked, roles: tuple[str, ...]) -> None:
    a1, a2 = st.columns([1, 3])
    with a1:
        level = st.selectbox("FPN level", list(models.levels), index=1, key="affinity_level")
        cells = st.select_slider("Cells along the longer side", [12, 16, 24, 32], value=16, key="affinity_cells")
    maps = affinity(ctx.root_key, ctx.preset, ctx.seed, ctx.stamp, picked.key, level, roles, cells, picked)
    gh, gw = maps.grid
    cell = st.session_state.get("affinity_cell")
    view_key = (picked.key, level, cells)
    if cell is None or st.session_state.get("affinity_view") != view_key:  # a new image or grid: its smallest object
        cell = default_cell(maps)
        st.session_state["affinity_cell"], st.session_state["affinity_view"] = cell, view_key
    with a1:
        widgets.show_chart(pcharts.pixel_picker_chart(picked.image, maps, cell), PIXEL_CHART, take_pixel_pick)
        st.caption(f"Cell (row {cell[0]}, column {cell[1]}) of {gh} × {gw}; cyan: ground-truth boxes.")
    with a2:
        st.vega_lite_chart(pcharts.pixel_affinity_spec(picked.image, maps, cell), key="affinity_maps")


affinity_explorer(picked, tuple(roles))

if models.has_graph_units():
    st.subheader("Graph-node explorer")

    st.caption(
        "The unit projects every pixel onto M graph nodes (P = W·x, signed: a pixel can vote against a node). "
        "Left: how strongly pixels vote into the chosen node; then each pixel's strongest node, the nodes' cosine "
        "affinity and the learned node mixing."
    )

    @st.cache_data(show_spinner="Projecting onto the graph …", max_entries=64)
    def view_of(root: str, preset: str, seed: int, stamp: float, image_key: str, role: str, level: str, _picked):
        return graph.graph_view(context.model_set(root, preset, seed, stamp), _picked.image, role, level, _picked.boxes)

    g1, g2 = st.columns([1, 2])
    with g1:
        role = st.selectbox("Model", models.roles, format_func=lambda r: ROLE_TITLES.get(r, r), key="pixel_graph_role")
        view = view_of(ctx.root_key, ctx.preset, ctx.seed, ctx.stamp, picked.key, role, level, picked)
        if view.residual_ratio < graph.NEAR_PASS_THROUGH:
            st.warning(
                f"Near pass-through: this unit changes its input by {view.residual_ratio:.1%} "
                "(‖G(x) − x‖ / ‖x‖), so G(x) ≈ x and its nodes carry little relation; read the nodes below as "
                "what an almost untrained unit does."
            )
        else:
            st.caption(f"Residual ratio ‖G(x) − x‖ / ‖x‖ = {view.residual_ratio:.2f}.")
        # start on the purest node when the image has boxes, else on the one most pixels vote into
        ranking = view.purity if view.purity is not None else view.node_shares()
        node = st.slider("Node", 0, view.nodes - 1, int(ranking.argmax()), key="pixel_node")
        shares = pd.DataFrame({"node": range(view.nodes), "share of pixels (arg-max)": view.node_shares()})
        if view.purity is not None:
            shares["purity (mass inside boxes)"] = view.purity
            shares = shares.sort_values("purity (mass inside boxes)", ascending=False)
        widgets.show_table(shares.round(3), f"nodes_{role}_{level}.csv", "pixel_nodes", height=220)

    @st.cache_data(show_spinner=False, max_entries=256)
    def graph_png(root, preset, seed, stamp, image_key, role, level, node: int, _picked) -> bytes:
        v = view_of(root, preset, seed, stamp, image_key, role, level, _picked)
        return widgets.png_of(vpixel.plot_graph_view(_picked.image, v, node))

    with g2:
        png = graph_png(ctx.root_key, ctx.preset, ctx.seed, ctx.stamp, picked.key, role, level, node, picked)
        widgets.show_png(png, f"graph_{role}_{level}_node{node}.png", "pixel_graph")
else:
    st.subheader("Graph-node explorer")
    st.info(
        f"The DRKD run {models.run_dirs['drkd'].name} trained no graph-reasoning units (its L_PR was off), so there "
        "is no graph projection to explore; the maps above show the plain FPN feature."
    )

st.subheader("Over the test split")
s1, s2 = st.columns([1, 2])
with s1:
    count = st.slider("Images", 5, 100, 20, 5, key="pixel_summary_images")
    show = st.toggle("Compute the split-wide contrast", value=False, key="pixel_summary")


@st.cache_data(show_spinner="Running the detectors over the test split …", max_entries=16)
def summary(root: str, preset: str, seed: int, stamp: float, level: str, roles: tuple[str, ...], count: int):
    models = context.model_set(root, preset, seed, stamp)
    dataset = context.test_split(root, preset, stamp)
    return pixel.contrast_summary(models, dataset, level, max_images=count, roles=roles)


@st.cache_data(show_spinner=False, max_entries=16)
def summary_png(
    root: str, preset: str, seed: int, stamp: float, level: str, roles: tuple[str, ...], count: int
) -> bytes:
    return widgets.png_of(vpixel.plot_contrast_summary(summary(root, preset, seed, stamp, level, roles, count)))


if show:
    frame = summary(ctx.root_key, ctx.preset, ctx.seed, ctx.stamp, level, tuple(roles), count)
    with s2:
        png = summary_png(ctx.root_key, ctx.preset, ctx.seed, ctx.stamp, level, tuple(roles), count)
        widgets.show_png(png, f"contrast_{level}.png", "pixel_summary")
    widgets.show_table(frame.round(4), f"contrast_summary_{level}.csv", "pixel_summary")
