"""The reports of a runs folder, as the dashboard and the notebooks read them: listed, read and checked (model
names are plain names, every run and file they name lies inside the runs folder), their leaderboard and
provenance. The pipeline and `drkd-viz report` write them (drkd_viz.experiments.report)."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from drkd_viz.errors import UserError
from drkd_viz.runs.folder import RunFolder
from drkd_viz.runs.root import RunsRoot, inside, report_runs

if TYPE_CHECKING:  # pandas is imported where used: the CLI needs none of it
    import pandas as pd


class Interval(TypedDict):
    """A mean over seeds (or a mean paired gain) with its Student-t 95 % interval (None with one seed)."""

    n: int
    mean: float
    std: float
    ci95: list[float | None]


class ModelEntry(TypedDict, total=False):
    """One model of a report: its runs (one per seed, relative to the runs folder) and their numbers."""

    runs: list[str]
    seeds: list[int]
    per_seed: dict[str, dict[str, float]]  # str(seed) -> COCO metrics (fractions)
    summary: dict[str, Interval]  # AP, AP50, AP75, APs, APm, APl over seeds
    per_class: dict[str, float | None]
    wall_seconds: float
    shipped: bool  # installed from weights shipped with the package
    gain_over_baseline: dict[str, Interval]  # students: paired by seed
    gap_closed: dict[str, float | None]  # the gain as a share of the teacher's lead


class Report(TypedDict, total=False):
    """``RUNS/reports/<name>/report.json``, as the pipeline and `drkd-viz report` write it."""

    preset: str  # the report's name
    dataset: str
    family: str
    seeds: list[int]
    notes: str
    split: str
    data: dict[str, str]  # images and annotations of the split, when not the pipeline's RUNS/data/<split>
    wall_seconds: float
    created: str
    provenance: dict[str, Any]  # versions, host, git commit, and each run's config key and status
    models: dict[str, ModelEntry]
    costs: dict[str, dict[str, float]]  # teacher / student: parameters, GFLOPs, CPU images/s, speed-ups
    scientific_bar: list[dict[str, Any]]
    val_variants: list[dict[str, Any]]
    errors: dict[str, Any]  # TIDE's error breakdown by size (drkd_viz.analysis.detection_errors.errors_for_report)


@dataclass(frozen=True)
class ReportInfo:
    preset: str
    path: Path  # RUNS/reports/<preset>/report.json
    created: str  # as the report states it
    mtime: float


def list_reports(root: Path) -> list[ReportInfo]:
    """Every ``RUNS/reports/<preset>/report.json``, newest first."""
    root = Path(root).absolute()  # a relative root would be joined onto itself by `inside`
    folder = RunsRoot(root).reports
    if not folder.is_dir():
        return []
    found = []
    for sub in folder.iterdir():
        try:
            path = inside(root, RunsRoot(root).report_file(sub.name))
        except UserError:
            continue  # a link pointing out of the runs folder is not followed
        if path.is_file():
            try:
                created = str(json.loads(path.read_text()).get("created", ""))
            except (OSError, json.JSONDecodeError):
                continue  # being written right now, or not a report
            found.append(ReportInfo(sub.name, path, created, path.stat().st_mtime))
    return sorted(found, key=lambda r: r.mtime, reverse=True)


def default_report(reports: list[ReportInfo]) -> str | None:
    """``demo`` when there is one (the embedded default), else the newest."""
    names = [r.preset for r in reports]
    if "demo" in names:
        return "demo"
    return names[0] if names else None


def read_report(root: str | os.PathLike, preset: str | None = None) -> Report:
    """``RUNS/reports/<preset>/report.json``, checked (:func:`check_report`); ``preset`` may be left out when the
    folder holds one report."""
    root = Path(root).absolute()  # a relative root would be joined onto itself by `inside`
    if preset is None:
        found = [info.preset for info in list_reports(root)]
        if len(found) != 1:
            folder = RunsRoot(root).reports
            build = f"write one with `drkd-viz pipeline --preset demo --out {root}`"
            raise UserError(
                f"{folder} holds reports {sorted(found)}: name one" if found else f"no report in {folder}; {build}"
            )
        preset = found[0]
    path = inside(root, RunsRoot(root).report_file(preset))
    if not path.is_file():
        there = sorted(info.preset for info in list_reports(root))
        raise UserError(
            f"no report for preset {preset!r} in {root} (reports there: {there or 'none'}); build it with "
            f"`drkd-viz pipeline --preset {preset}` or `drkd-viz report`"
        )
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); rebuild it with drkd-viz pipeline") from None
    return check_report(root, report)


PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def check_report(root: Path, report: Report) -> Report:
    """Refuse a report whose model names are not plain names (they become run-folder names) or whose runs
    lie outside the runs folder; returns the report."""
    for name in report.get("models", {}):
        if not PLAIN_NAME.match(name):
            raise UserError(f"the report names a model {name!r}; model names are letters, digits and underscores")
    report_runs(root, report)
    for name in report.get("provenance", {}).get("runs", {}):
        inside(root, name)
    return report


def replaced_runs(root: Path, report: Report) -> list[str]:
    """Runs of the report whose folder now holds a run of another config (another preset built into the
    same folder since), or is gone: the report's numbers no longer describe what is on disk."""
    changed = []
    for name, info in report.get("provenance", {}).get("runs", {}).items():
        inside(root, RunFolder(Path(name)).pipeline_marker)  # refuses a marker that links outside the runs folder
        if RunFolder(inside(root, name)).marked_key() != info.get("config_key"):
            changed.append(name)
    return changed


def _num(value: float | None, scale: float = 100.0) -> float:
    return math.nan if value is None else value * scale


def leaderboard(report: Report, gain_keys: tuple[str, ...] = ("AP", "APs")) -> pd.DataFrame:
    """One row per model of the report: AP … AP_L (percent, mean over seeds) with 95 % intervals,
    gains over the baseline (for ``gain_keys``), gap closed, parameters and CPU speed. A pandas DataFrame."""
    import pandas as pd

    rows = []
    costs = report.get("costs", {})
    for name, entry in report["models"].items():
        row: dict[str, Any] = {"model": name, "seeds": len(entry["seeds"])}
        for key, summary in entry["summary"].items():
            row[key] = _num(summary["mean"])
            if key in ("AP", "APs", "APm", "APl"):
                low, high = summary["ci95"]
                row[f"{key} CI low"], row[f"{key} CI high"] = _num(low), _num(high)
        gain = entry.get("gain_over_baseline", {})
        for key in gain_keys:
            row[f"Δ{key}"] = _num(gain[key]["mean"]) if key in gain else math.nan
            row[f"Δ{key} CI low"] = _num(gain[key]["ci95"][0]) if key in gain else math.nan
            row[f"Δ{key} CI high"] = _num(gain[key]["ci95"][1]) if key in gain else math.nan
            closed = entry.get("gap_closed", {}).get(key)
            row[f"gap closed {key} (%)"] = _num(closed)
        cost = costs.get("teacher" if name == "teacher" else "student", {})
        row["parameters (M)"] = cost.get("parameters", math.nan) / 1e6
        row["GFLOPs / image"] = cost.get("gflops_per_image", math.nan)
        row["CPU images / s"] = cost.get("cpu_images_per_s", math.nan)
        row["CPU images / s, 1 thread"] = cost.get("cpu_images_per_s_1thread", math.nan)
        # the paired per-image median (reports before it lack the figure)
        row["CPU speed-up vs teacher"] = 1.0 if name == "teacher" else cost.get("speedup", math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def training_seconds(report: Report) -> float:
    """What training every run of the report took, summed (a pipeline rerun reuses runs, so its own wall
    time can be seconds)."""
    return sum(entry.get("wall_seconds", 0.0) for entry in report.get("models", {}).values())


def provenance(report: Report) -> dict[str, str]:
    git = report.get("provenance", {}).get("git", {})
    commit = git.get("commit") or "unknown"
    return {
        "preset": report["preset"],
        "dataset": (f"`{report['data']['annotations']}`" if report.get("data") else f"embedded `{report['dataset']}`")
        + f", {report.get('split', 'test')} split",
        "detector family": report["family"],
        "seeds": ", ".join(str(s) for s in report["seeds"]),
        "commit": commit[:12] + (" (with local changes)" if git.get("dirty") else ""),
        "created": report.get("created", ""),
        "pipeline wall time": f"{report.get('wall_seconds', 0) / 60:.1f} min",
        "training time of its runs": f"{training_seconds(report) / 60:.1f} min",
    }
