"""Why the models of a runs folder or report lose AP, per object size: TIDE's error tables, confusion matrices and
an image-level comparison.

The TIDE core (:func:`drkd_viz.tide.error_breakdown`, :func:`drkd_viz.tide.confusion_matrix`, the error types and
how they are named and fixed) is :mod:`drkd_viz.tide`; the functions here read a runs folder (each run's stored
``eval/<split>/detections.json``), and ``error_table`` / ``error_gains`` put every model of a report side by side,
paired by seed.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drkd_viz.analysis.small_objects import detections_file, file_stamp, ground_truth_file
from drkd_viz.data.validation import read_json
from drkd_viz.errors import UserError
from drkd_viz.tide import (
    ERROR_TYPES,
    FOREGROUND_IOU,
    SPECIAL_TYPES,
    Confusion,
    ErrorBreakdown,
    confusion_matrix,
    error_breakdown,
)
from drkd_viz.utils.stats import paired_difference


# ---- the models of a runs folder or report ---------------------------------------------------------------------
@lru_cache(maxsize=64)
def _breakdown(gt: tuple[str, int], detections: tuple[str, int]) -> dict[str, ErrorBreakdown]:
    return error_breakdown(gt[0], detections[0])


def model_errors(
    runs: str | os.PathLike, role: str, seed: int = 0, report: dict[str, Any] | None = None
) -> dict[str, ErrorBreakdown]:
    """The error breakdown of a run's stored detections (the run ``report`` names for ``role`` and ``seed``, else
    ``RUNS/<role>-s<seed>``) for every size, cached per file version (read it only)."""
    return _breakdown(
        file_stamp(ground_truth_file(runs, report)), file_stamp(detections_file(runs, role, seed, report))
    )


def _models_and_seeds(report: dict[str, Any], models: list[str] | None) -> list[tuple[str, int]]:
    names = list(report["models"]) if models is None else models
    unknown = [m for m in names if m not in report["models"]]
    if unknown:
        raise UserError(f"the report has no model {unknown} (it has {list(report['models'])})")
    return [(m, int(s)) for m in names for s in report["models"][m]["seeds"]]


TABLE_COLUMNS = ["model", "seed", "size", "error", "recovered", "count", "ap"]


def _table_rows(model: str, seed: int, by_size: dict[str, ErrorBreakdown]) -> list[dict[str, Any]]:
    return [
        {
            "model": model,
            "seed": seed,
            "size": size,
            "error": kind,
            "recovered": result.recovered[kind],
            "count": result.counts.get(kind, math.nan),
            "ap": result.ap,
        }
        for size, result in by_size.items()
        for kind in (*ERROR_TYPES, *SPECIAL_TYPES)
    ]


def error_table(
    runs: str | os.PathLike, report: dict[str, Any], models: list[str] | None = None, progress: Any = None
) -> pd.DataFrame:
    """TIDE's breakdown of every model and seed of ``report`` (or of ``models``), by size.

    Columns: ``model``, ``seed``, ``size`` (all, small, medium, large), ``error`` (ERROR_TYPES, then
    SPECIAL_TYPES), ``recovered`` (AP50 the fix gives back, fraction), ``count`` (errors of that type; NaN for the
    special rows) and ``ap`` (the model's AP50 on that size). ``progress(done, total)`` is called after each run."""
    pairs = _models_and_seeds(report, models)
    rows = []
    for done, (model, seed) in enumerate(pairs, 1):
        rows += _table_rows(model, seed, model_errors(runs, model, seed, report))
        if progress is not None:
            progress(done, len(pairs))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def errors_for_report(gt: str | os.PathLike, detections: dict[str, dict[int, Path]]) -> dict[str, Any]:
    """The report's ``errors`` section from each model's detections files by seed: per model, size and error
    type the AP50 lost (mean over seeds) and the number of errors, and for every other model the paired
    difference to the baseline's (a :class:`drkd_viz.utils.stats.Summary` as JSON)."""
    gt_data = read_json(gt, "ground-truth annotation file")
    rows = []
    for model, files in detections.items():
        for seed, path in files.items():
            rows += _table_rows(model, seed, error_breakdown(gt_data, path))
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    summary = table.groupby(["model", "size", "error"], sort=False)[["recovered", "count", "ap"]].mean()
    models: dict[str, Any] = {}
    for (model, size, error), values in summary.iterrows():
        cell = models.setdefault(model, {}).setdefault(size, {"ap50": _clean(values["ap"])})
        cell[error] = {"recovered": _clean(values["recovered"]), "count": _clean(values["count"])}
    section: dict[str, Any] = {"iou": FOREGROUND_IOU, "types": list(ERROR_TYPES), "models": models}
    if "baseline" in detections and len(detections) > 1:
        gains = error_gains(table)
        section["vs_baseline"] = {}
        for row in gains.itertuples():
            section["vs_baseline"].setdefault(row.model, {}).setdefault(row.size, {})[row.error] = {
                "mean": _clean(row.difference),
                "ci95": [_clean(row.ci_low), _clean(row.ci_high)],
                "n": int(row.seeds),
            }
    return section


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def error_gains(table: pd.DataFrame, reference: str = "baseline") -> pd.DataFrame:
    """Each student's recovered AP minus the reference's (the baseline student), paired by seed, per size and
    error type (the teacher is left out). A negative difference on ``miss`` means the student loses less AP to
    missed objects than the reference: "DRKD recovers X AP50 of missed small objects" reads off the ``small`` /
    ``miss`` row as −difference.

    Columns: ``model``, ``size``, ``error``, ``recovered`` (mean over the model's seeds), ``reference`` (the
    reference's, same seeds), ``difference`` (mean of the paired differences), ``ci_low`` / ``ci_high`` (Student-t
    95 % interval; NaN with one seed) and ``seeds``."""
    if reference not in set(table["model"]):
        raise UserError(f"the table has no {reference!r} model to compare with (it has {sorted(set(table['model']))})")
    base = table[table["model"] == reference].set_index(["seed", "size", "error"])["recovered"]
    rows = []
    students = table[~table["model"].isin([reference, "teacher"])]  # the teacher is not distilled
    for (model, size, error), group in students.groupby(["model", "size", "error"], sort=False):
        paired = [(r.recovered, base.get((r.seed, size, error))) for r in group.itertuples()]
        paired = [(a, b) for a, b in paired if b is not None and not (math.isnan(a) or math.isnan(b))]
        if not paired:
            continue
        gain = paired_difference([a for a, _ in paired], [b for _, b in paired])
        rows.append(
            {
                "model": model,
                "size": size,
                "error": error,
                "recovered": float(np.mean([a for a, _ in paired])),
                "reference": float(np.mean([b for _, b in paired])),
                "difference": gain.mean,
                "ci_low": gain.low,
                "ci_high": gain.high,
                "seeds": gain.n,
            }
        )
    return pd.DataFrame(
        rows,
        columns=["model", "size", "error", "recovered", "reference", "difference", "ci_low", "ci_high", "seeds"],
    )


def model_confusion(
    runs: str | os.PathLike,
    role: str,
    seed: int = 0,
    report: dict[str, Any] | None = None,
    score_threshold: float = 0.5,
    size: str = "all",
) -> Confusion:
    """:func:`drkd_viz.tide.confusion_matrix` of a run's stored detections."""
    return _confusion(
        file_stamp(ground_truth_file(runs, report)),
        file_stamp(detections_file(runs, role, seed, report)),
        float(score_threshold),
        size,
    )


@lru_cache(maxsize=64)
def _confusion(gt: tuple[str, int], detections: tuple[str, int], score_threshold: float, size: str) -> Confusion:
    return confusion_matrix(gt[0], detections[0], score_threshold=score_threshold, size=size)


# ---- which images changed -------------------------------------------------------------------------------------
def image_changes(
    runs: str | os.PathLike,
    method: str,
    reference: str = "baseline",
    seed: int = 0,
    report: dict[str, Any] | None = None,
    score_threshold: float = 0.5,
    size: str = "all",
) -> pd.DataFrame:
    """Per test image, how ``method``'s result differs from ``reference``'s at IoU 0.5, counting detections that
    score ≥ ``score_threshold`` (objects of ``size`` only, and false positives of that size by box area).

    Columns: ``image_id``, ``found`` (objects ``method`` finds and ``reference`` misses), ``lost`` (the reverse),
    ``fp_added`` / ``fp_removed`` (false positives only ``method`` / only ``reference`` has, counted per error
    type and class: a fp of the same type and class on both sides cancels), ``net`` (found − lost − fp_added +
    fp_removed: > 0 where the method does better), ``change`` (found + lost + fp_added + fp_removed); sorted by
    change, then net, largest first."""
    a = model_errors(runs, method, seed, report)[size]
    b = model_errors(runs, reference, seed, report)[size]

    def found(result: ErrorBreakdown) -> set[int]:
        objects = result.objects
        hit = objects[(objects["outcome"] == "found") & (objects["score"].fillna(-1) >= score_threshold)]
        return set(hit["ann_id"])

    def false_positives(result: ErrorBreakdown) -> pd.Series:
        dets = result.detections
        fps = dets[(dets["score"] >= score_threshold) & ~dets["outcome"].isin(["tp", "ignored"])]
        return fps.groupby(["image_id", "outcome", "category_id"]).size()

    objects = a.objects.set_index("ann_id")["image_id"]
    found_a, found_b = found(a), found(b)
    fp_a, fp_b = false_positives(a), false_positives(b)
    fp_diff = fp_a.sub(fp_b, fill_value=0)
    image_ids = sorted(set(objects) | {k[0] for k in fp_diff.index})
    rows = []
    for image_id in image_ids:
        mine = set(objects[objects == image_id].index)
        d = fp_diff[fp_diff.index.get_level_values(0) == image_id] if len(fp_diff) else fp_diff
        added, removed = int(d[d > 0].sum()), int(-d[d < 0].sum())
        gained, lost = len((found_a - found_b) & mine), len((found_b - found_a) & mine)
        rows.append(
            {
                "image_id": int(image_id),
                "found": gained,
                "lost": lost,
                "fp_added": added,
                "fp_removed": removed,
                "net": gained - lost - added + removed,
                "change": gained + lost + added + removed,
            }
        )
    table = pd.DataFrame(rows, columns=["image_id", "found", "lost", "fp_added", "fp_removed", "net", "change"])
    table = table.sort_values(["change", "net"], ascending=False, kind="stable").reset_index(drop=True)
    table.attrs = {"method": method, "reference": reference, "score_threshold": score_threshold, "size": size}
    return table
