"""Small UI pieces the pages share: a figure with its PNG download, a table with its CSV download,
and the image picker (an image of the test split, or an upload)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import streamlit as st
import torch

from drkd_viz.data.images import UPLOAD_MAX_MB, UPLOAD_MAX_PIXELS, UPLOAD_TYPES, decode_upload
from drkd_viz.errors import UserError

from .context import Context, dataset_of, test_split


def png_of(fig) -> bytes:
    """A figure as PNG bytes (pages cache the bytes, not the figure)."""
    from drkd_viz.viz.common import figure_png

    return figure_png(fig)


def show_png(png: bytes, file_name: str, key: str, caption: str | None = None, width: Any = "content") -> None:
    """A figure at its own size (shrunk to the column when wider) with its PNG download."""
    st.image(png, caption=caption, width=width)
    st.download_button("Download PNG", png, file_name=file_name, mime="image/png", key=f"{key}_png", on_click="ignore")


def show_chart(chart: Any, key: str, on_select: Any = "ignore") -> Any:
    """An interactive (Altair) chart, its spec built without Altair's schema validation: the charts are checked
    once in the tests (drawn by Vega itself), and validating a few thousand cells on every click cost a third of
    a second. ``on_select``: "ignore", "rerun" or a callback (a click then reruns the fragment or page)."""
    return st.vega_lite_chart(chart.to_dict(validate=False), on_select=on_select, key=key)


def png_download(png: bytes, file_name: str, key: str) -> None:
    """The PNG download of a figure the page shows as an interactive chart."""
    st.download_button("Download PNG", png, file_name=file_name, mime="image/png", key=f"{key}_png", on_click="ignore")


EMPTY_CELL = "—"  # what an empty cell (None, NaN) shows, never the text "None"


def _format_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):  # NaN != NaN
        return EMPTY_CELL
    return format(value, ".10g") if isinstance(value, float) else str(value)


def table_view(frame):
    """``frame`` for st.dataframe: in the columns that have empty cells, every cell as text with "—" for the empty
    ones (Streamlit prints "None" for a missing value whatever a Styler says). Other columns, and the CSV download,
    keep their values; floats keep the digits the caller rounded them to."""
    empty = frame.isna()
    if not empty.to_numpy().any():
        return frame
    shown = frame.copy()
    for column in frame.columns[empty.any().to_numpy()]:
        shown[column] = [_format_cell(value) for value in frame[column]]
    return shown


def show_table(frame, file_name: str, key: str, **kwargs: Any) -> None:
    st.dataframe(table_view(frame), hide_index=True, key=f"{key}_table", **kwargs)
    st.download_button(
        "Download CSV",
        frame.to_csv(index=False).encode(),
        file_name=file_name,
        mime="text/csv",
        key=f"{key}_csv",
        on_click="ignore",
    )


@dataclass
class Picked:
    key: str  # identifies the image in cache keys: "test:<index>" or "upload:<sha256>"
    name: str
    image: torch.Tensor  # 3 x H x W in [0, 1]
    boxes: torch.Tensor  # N x 4 ground truth (x1, y1, x2, y2); empty for an upload
    labels: torch.Tensor
    has_truth: bool
    index: int | None = None  # position in the test split


@st.cache_data(show_spinner=False, max_entries=8)
def _decode_upload(data: bytes, name: str) -> torch.Tensor:
    return decode_upload(data, name)


@st.cache_data(show_spinner=False, max_entries=8)
def test_choices(root: str, preset: str, stamp: float) -> list[str]:
    """One label per test image: file name, objects, small objects."""
    from drkd_viz.data.statistics import size_bucket

    dataset = test_split(root, preset, stamp)
    labels = []
    for i in range(len(dataset)):
        info = dataset.image_info(i)
        anns = dataset.coco.imgToAnns[dataset.ids[i]]
        small = sum(size_bucket(a["area"]) == "small" for a in anns)
        labels.append(f"{info['file_name']} — {len(anns)} objects, {small} small")
    return labels


def image_picker(ctx: Context, key: str, allow_upload: bool = True) -> Picked | None:
    """An image of the test split (with its ground truth) or, when ``allow_upload``, an uploaded one."""
    from drkd_viz.analysis.models import image_and_boxes

    source = "test split"
    if allow_upload:
        source = st.radio("Image from", ["test split", "upload"], horizontal=True, key=f"{key}_source")
    if source == "upload":
        uploaded = st.file_uploader(
            f"An image (PNG, JPEG, BMP or WebP; at most {UPLOAD_MAX_MB} MB and "
            f"{UPLOAD_MAX_PIXELS / 1e6:.0f} megapixels)",
            type=list(UPLOAD_TYPES),
            max_upload_size=UPLOAD_MAX_MB,
            key=f"{key}_upload",
        )
        if uploaded is None:
            st.info("Upload an image, or pick one of the test split.")
            return None
        data = uploaded.getvalue()
        try:
            image = _decode_upload(data, uploaded.name)
        except UserError as exc:
            st.error(str(exc))
            return None
        empty = torch.zeros((0, 4))
        digest = hashlib.sha256(data).hexdigest()[:16]
        return Picked(f"upload:{digest}", uploaded.name, image, empty, torch.zeros(0, dtype=torch.int64), False)
    choices = test_choices(ctx.root_key, ctx.preset, ctx.stamp)
    index = st.selectbox("Test image", range(len(choices)), format_func=lambda i: choices[i], key=f"{key}_index")
    dataset = dataset_of(ctx)
    image, boxes, labels = image_and_boxes(dataset, index)
    return Picked(f"test:{index}", choices[index].split(" — ")[0], image, boxes, labels, True, index)
