"""A figure and its PNG: the one place a figure becomes bytes (reports, datasheets, downloads, tests).

Figures are ``matplotlib.figure.Figure`` objects, built without pyplot, so they render headless and in Streamlit
alike; this module imports nothing of the project, so data and report code can draw without the analysis stack.
"""

from __future__ import annotations

import io
import sys

from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    """A Figure of ``width`` x ``height`` inches (12 in at 100 dpi ≈ 1200 px) with constrained layout."""
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (downloads, reports, tests); the one place a figure becomes a PNG. A figure made
    through pyplot is closed too, so that pyplot does not keep it alive."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)
    return buffer.getvalue()
