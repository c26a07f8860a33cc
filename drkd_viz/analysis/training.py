"""Training curves of a run: its metrics.jsonl as a table, the detector's own loss beside the distillation
terms, and the one-line summary the Runs page lists."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drkd_viz.distill.config import TERM_KEYS as DISTILL_TERMS  # what the distiller adds to the detector's losses
from drkd_viz.runs import RunFolder

if TYPE_CHECKING:
    import pandas as pd


def _num(value: float | None, scale: float = 100.0) -> float:
    return math.nan if value is None else value * scale


def read_metrics(run: Path) -> pd.DataFrame:
    """A run's metrics.jsonl as a DataFrame indexed by iteration (a partly written last line is skipped)."""
    import pandas as pd

    records = []
    with open(RunFolder(run).metrics, encoding="utf-8") as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    frame = pd.DataFrame(records)
    return frame.set_index("iter") if "iter" in frame else frame


def detection_loss(frame: pd.DataFrame) -> pd.Series:
    """The detector's own loss (sum of its ``loss_*`` terms other than distillation terms)."""
    terms = [c for c in frame.columns if c.startswith("loss_") and c not in DISTILL_TERMS]
    return frame[terms].sum(axis=1)


def run_summary(run: Path, name: str | None = None) -> dict[str, Any]:
    """One row of the Runs page's table; ``name`` labels the run (default: its folder name)."""
    manifest = RunFolder(run).read_manifest()
    val = (manifest.get("metrics") or {}).get("val", {})
    return {
        "run": name or run.name,
        "status": manifest.get("status", "unknown"),
        "formula": manifest.get("formula", ""),
        "wall time (s)": manifest.get("wall_seconds"),
        "val AP (%)": _num(val.get("AP")),
        "val AP_S (%)": _num(val.get("APs")),
    }
