"""Interactive pixel-relation charts (Vega-Lite), the dashboard's and the notebooks' way to see what a pixel's
relations carry: :func:`pixel_picker_chart` (click a cell of the image, selection ``SELECT_PIXEL``) and
:func:`pixel_affinity_chart` / :func:`pixel_affinity_spec`: how every model's features relate that cell to the rest
of the image (the global pixel relation, paper Fig. 1), and the difference to the teacher.

Colours are perceptually uniform: viridis for values, a diverging red-blue for differences. Each map is drawn as
one image (a PNG data URL) rather than a rectangle per cell, so a click redraws at once.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd

from drkd_viz.analysis.pixel import AffinityMaps
from drkd_viz.viz.charts import _alt
from drkd_viz.viz.common import image_array, role_title
from drkd_viz.viz.relation_charts import _outline

SELECT_PIXEL = "pixel_cell"  # a click on the image grid of the affinity explorer: fields row, col


def _png_url(picture: Any) -> str:
    """A PIL image as a PNG data URL, for Vega-Lite's image mark."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _image_url(image: Any, max_side: int = 320) -> str:
    """The image as a PNG data URL (shrunk to ``max_side``)."""
    from PIL import Image

    picture = Image.fromarray((image_array(image) * 255).astype(np.uint8))
    picture.thumbnail((max_side, max_side))
    return _png_url(picture)


def _grid_encoding(maps: AffinityMaps) -> tuple[Any, Any]:
    alt = _alt()
    gh, gw = maps.grid
    x = alt.X("col:Q", scale=alt.Scale(domain=[0, gw], nice=False, zero=True), axis=None)
    y = alt.Y("row:Q", scale=alt.Scale(domain=[0, gh], nice=False, reverse=True), axis=None)
    return x, y


def _image_layer(url: str, maps: AffinityMaps) -> Any:
    alt = _alt()
    gh, gw = maps.grid
    frame = pd.DataFrame({"url": [url], "x": [0], "x2": [gw], "y": [0], "y2": [gh]})
    return (
        alt.Chart(frame)
        .mark_image(aspect=False)
        .encode(
            url="url:N",
            x=alt.X("x:Q", scale=alt.Scale(domain=[0, gw], nice=False), axis=None),
            x2="x2:Q",
            y=alt.Y("y:Q", scale=alt.Scale(domain=[0, gh], nice=False, reverse=True), axis=None),
            y2="y2:Q",
        )
    )


def _cell_outline(cell: tuple[int, int], color: str = "#ffd700") -> Any:
    r, c = cell
    return _outline(c, c + 1, r, r + 1, color)


def _panel_size(maps: AffinityMaps, width: int) -> tuple[int, int]:
    gh, gw = maps.grid
    return width, max(1, round(width * gh / gw))


def pixel_picker_chart(image: Any, maps: AffinityMaps, cell: tuple[int, int], width: int = 260) -> Any:
    """The image under a grid of the level's cells: click a cell (selection ``SELECT_PIXEL``) to see its relations;
    the chosen ``cell`` (row, col) is outlined; the ground-truth boxes, when given to the analysis, are drawn."""
    alt = _alt()
    gh, gw = maps.grid
    grid = pd.DataFrame([{"row": r, "col": c} for r in range(gh) for c in range(gw)])
    x, y = _grid_encoding(maps)
    pick = alt.selection_point(name=SELECT_PIXEL, fields=["row", "col"], on="click")
    cells = (
        alt.Chart(grid)
        .mark_rect(fill="white", fillOpacity=0.0, stroke="white", strokeOpacity=0.08)
        .encode(x=x, x2="col_end:Q", y=y, y2="row_end:Q", tooltip=["row:Q", "col:Q"])
        .transform_calculate(col_end="datum.col + 1", row_end="datum.row + 1")
        .add_params(pick)
    )
    layers = [_image_layer(_image_url(image), maps)]
    if len(maps.boxes):
        layers.append(
            alt.Chart(pd.DataFrame(maps.boxes, columns=["x", "y", "x2", "y2"]))
            .mark_rect(fill=None, stroke="#00e5ff", strokeWidth=1, clip=True)
            .encode(x=alt.X("x:Q", axis=None), x2="x2:Q", y=alt.Y("y:Q", axis=None), y2="y2:Q")
        )
    # the clear grid on top: a click anywhere, outlines included, lands on a cell
    layers += [_cell_outline(cell), cells]
    w, h = _panel_size(maps, width)
    return alt.layer(*layers).properties(width=w, height=h, title="click a cell").configure_view(strokeWidth=0)


def affinity_cells(maps: AffinityMaps, cell: tuple[int, int]) -> pd.DataFrame:
    """One row per (model, grid cell): the cosine ``affinity`` of the chosen ``cell`` with it, and ``difference``
    to the teacher's (NaN without a teacher)."""
    gh, gw = maps.grid
    index = cell[0] * gw + cell[1]
    teacher = maps.affinity.get("teacher")
    parts = []
    for role, matrix in maps.affinity.items():
        row = matrix[index]
        parts.append(
            pd.DataFrame(
                {
                    "role": role,
                    "model": role_title(role),
                    "row": np.repeat(np.arange(gh), gw),
                    "col": np.tile(np.arange(gw), gh),
                    "affinity": row,
                    "difference": row - teacher[index] if teacher is not None else np.nan,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _heat_url(values: np.ndarray, cmap: str, limit: float, opacity: float) -> str:
    """A grid of values (rows x columns, −limit…limit) as a small PNG data URL in a matplotlib colour map: one image
    mark per panel draws in the browser at once where thousands of rectangles took a second."""
    from matplotlib import colormaps
    from PIL import Image

    rgba = colormaps[cmap]((np.nan_to_num(values) + limit) / (2 * limit))
    rgba[..., 3] = opacity
    return _png_url(Image.fromarray((rgba * 255).astype(np.uint8), "RGBA"))


def pixel_affinity_spec(
    image: Any, maps: AffinityMaps, cell: tuple[int, int], width: int = 200, opacity: float = 0.75
) -> dict[str, Any]:
    """The Vega-Lite spec of :func:`pixel_affinity_chart`, written as JSON directly: built through Altair's objects
    the same spec took half a second, too slow for a click (the dashboard shows this dict)."""
    url = _image_url(image)  # once: the same picture under every panel
    data = affinity_cells(maps, cell)
    gh, gw = maps.grid
    w, h = _panel_size(maps, width)
    spread = float(np.nanmax(np.abs(data["difference"]))) if data["difference"].notna().any() else 1.0
    spread = max(spread, 1e-3)
    # column -> (matplotlib colour map, limit, the same map in Vega, legend title)
    kinds = {
        "affinity": ("viridis", 1.0, {"scheme": "viridis"}, "affinity (cos)"),
        "difference": ("RdBu_r", spread, {"scheme": "redblue", "reverse": True}, "student − teacher"),
    }
    x = {"field": "x", "type": "quantitative", "axis": None, "scale": {"domain": [0, gw], "nice": False}}
    y = {
        "field": "y",
        "type": "quantitative",
        "axis": None,
        "scale": {"domain": [0, gh], "nice": False, "reverse": True},
    }

    def picture(source: str, smooth: bool = True) -> dict[str, Any]:
        return {
            "data": {"values": [{"url": source, "x": 0, "x2": gw, "y": 0, "y2": gh}]},
            "mark": {"type": "image", "aspect": False, "smooth": smooth},
            "encoding": {
                "url": {"field": "url", "type": "nominal"},
                "x": x,
                "x2": {"field": "x2"},
                "y": y,
                "y2": {"field": "y2"},
            },
        }

    def panel(role: str, field: str, title: str) -> dict[str, Any]:
        cmap, limit, scheme, legend = kinds[field]
        values = data.loc[data["role"] == role, field].to_numpy().reshape(gh, gw)
        r, c = cell
        outline = {
            "data": {"values": [{"x": c, "x2": c + 1, "y": r, "y2": r + 1}]},
            "mark": {"type": "rect", "fill": None, "stroke": "#ff2d2d", "strokeWidth": 2.5, "clip": True},
            "encoding": {"x": x, "x2": {"field": "x2"}, "y": y, "y2": {"field": "y2"}},
        }
        key = {  # invisible: it only carries the colour legend
            "data": {"values": [{field: -limit}, {field: limit}]},
            "mark": {"type": "point", "opacity": 0},
            "encoding": {
                "color": {
                    "field": field,
                    "type": "quantitative",
                    "scale": {"domain": [-limit, limit], **scheme},
                    "title": legend,
                }
            },
        }
        layers = [picture(url), picture(_heat_url(values, cmap, limit, opacity), smooth=False), outline, key]
        return {"layer": layers, "width": w, "height": h, "title": title}

    roles = list(maps.affinity)
    rows = [{"hconcat": [panel(r, "affinity", role_title(r)) for r in roles]}]
    students = [r for r in roles if r != "teacher"]
    if "teacher" in maps.affinity and students:
        rows.append({"hconcat": [panel(r, "difference", f"{role_title(r)} − teacher") for r in students]})
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v6.json",
        "vconcat": rows,
        "resolve": {"scale": {"color": "independent"}},
        "config": {"view": {"strokeWidth": 0}, "title": {"fontSize": 12}},
    }


def pixel_affinity_chart(
    image: Any, maps: AffinityMaps, cell: tuple[int, int], width: int = 200, opacity: float = 0.75
) -> Any:
    """For the chosen ``cell`` (row, col) of the grid: each model's affinity map over the image (cosine of the
    channel-centred features, −1…1; viridis over the image) and, for each student, its map minus the teacher's
    (red: relates more than the teacher does; blue: less). Each map is one image (the cells' values are in
    :func:`affinity_cells`) with its colour legend. An Altair chart (notebooks); the dashboard draws the
    :func:`pixel_affinity_spec` dict."""
    return _alt().VConcatChart.from_dict(pixel_affinity_spec(image, maps, cell, width, opacity), validate=False)
