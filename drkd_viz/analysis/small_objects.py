"""Where distillation helps: AP by object size, precision–recall curves per size, per-class gains, and the
individual ground-truth objects each model finds or misses.

Every number comes from what the pipeline stored: ``RUNS/reports/PRESET/report.json`` (AP summaries over
seeds) and each run's test detections ``RUNS/<run>/eval/test/detections.json`` evaluated against
``RUNS/data/test/annotations.json``. Nothing is re-predicted here, so the functions are fast after the
first call (evaluations and matchings are cached per file and modification time).

    report = read_report("runs/demo", "demo")   # drkd_viz.runs.reports
    ap_by_size(report)                     # model × size: mean, std and 95 % interval over seeds
    pr_curves("runs/demo")                 # model × area × recall -> precision (COCOeval)
    found_vs_missed("runs/demo", size="small")   # small objects DRKD finds and the baseline misses, and the reverse

The functions that read a run's detections take the runs of ``RUNS/<role>-s<seed>``, or with ``report=`` the runs
that report names for the seed (a study keeps its own in ``RUNS/study/``).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drkd_viz.analysis.models import run_dir
from drkd_viz.data.statistics import size_bucket
from drkd_viz.data.validation import read_json
from drkd_viz.errors import UserError
from drkd_viz.evaluation import AREA_NAMES, EvalResult, Matches, evaluate_detections, match_detections
from drkd_viz.runs import RunFolder, RunsRoot, report_split_files

SIZE_KEYS: dict[str, str] = {"all": "AP", "small": "APs", "medium": "APm", "large": "APl"}  # report key per size
DEFAULT_ROLES: tuple[str, ...] = ("teacher", "baseline", "drkd")


# ---- locating things in a runs folder -----------------------------------------------------------------------
def detections_file(runs: str | os.PathLike, role: str, seed: int, report: dict[str, Any] | None = None) -> Path:
    """A run's stored detections on the report's split (test without a report); a UserError says how to make
    them when they are missing."""
    split = "test" if report is None else report.get("split", "test")
    path = RunFolder(run_dir(runs, role, seed, report)).eval_detections(split)
    if not path.is_file():
        raise UserError(
            f"{path} is missing: the run was not evaluated on the {split} split (drkd-viz pipeline and "
            "drkd-viz report do it)"
        )
    return path


def ground_truth_file(runs: str | os.PathLike, report: dict[str, Any] | None = None) -> Path:
    """The annotations of the split the report was measured on (the runs folder's test split without one)."""
    if report is not None:
        path = report_split_files(runs, report)[1]
        if not path.is_file():
            raise UserError(f"{path}, the split the {report.get('preset', '?')!r} report was measured on, is gone")
        return path
    path = RunsRoot(Path(runs)).split_files("test")[1]
    if not path.is_file():
        raise UserError(f"{path} is missing: {runs} is not a runs folder written by `drkd-viz pipeline`")
    return path


def file_stamp(path: Path) -> tuple[str, int]:
    """Cache key of a file: a rewritten file (new mtime) is read again."""
    return str(path.resolve()), path.stat().st_mtime_ns


# ---- AP by size and per class (report.json) -----------------------------------------------------------------
def _number(x: float | None) -> float:
    # COCO writes -1 where there is nothing to measure (no ground truth of that size)
    return math.nan if x is None or x < 0 else float(x)


def ap_by_size(report: dict[str, Any]) -> pd.DataFrame:
    """COCO box AP (IoU 0.50:0.95, fraction in [0, 1]) by object size for every model of the report.

    Columns: ``model`` (report order), ``size`` (all, small, medium, large), ``mean``, ``std`` (sample standard
    deviation over seeds; 0 with one seed), ``ci_low`` / ``ci_high`` (Student-t 95 % interval of the mean; NaN
    with one seed), ``n`` (seeds) and ``values`` (the per-seed APs, seed order). NaN where COCO reports -1.
    """
    rows = []
    for model, entry in report["models"].items():
        for size, key in SIZE_KEYS.items():
            summary = entry["summary"][key]
            low, high = summary["ci95"]
            rows.append(
                {
                    "model": model,
                    "size": size,
                    "mean": _number(summary["mean"]),
                    "std": float(summary["std"]),
                    "ci_low": _number(low),
                    "ci_high": _number(high),
                    "n": int(summary["n"]),
                    "values": tuple(_number(entry["per_seed"][str(s)][key]) for s in entry["seeds"]),
                }
            )
    return pd.DataFrame(rows)


def per_class_gains(report: dict[str, Any], method: str = "drkd") -> pd.DataFrame:
    """Per-class AP (IoU 0.50:0.95, area all, mean over seeds as the report stores it) of ``method`` against
    the baseline student, with the teacher's for reference.

    Columns: ``class``, ``teacher_ap``, ``baseline_ap``, ``method_ap``, ``gain`` (method − baseline),
    ``method``; sorted by gain, largest first. The report keeps per-class AP as a mean over seeds only,
    so there is no per-class spread to show. NaN for a class without test ground truth.
    """
    models = report["models"]
    for needed in ("baseline", method):
        if needed not in models:
            raise UserError(f"the report has no {needed!r} model (it has {list(models)})")
    teacher = models.get("teacher", {}).get("per_class", {})
    rows = []
    for name, base in models["baseline"]["per_class"].items():
        value = models[method]["per_class"].get(name)
        rows.append(
            {
                "class": name,
                "teacher_ap": _number(teacher.get(name)),
                "baseline_ap": _number(base),
                "method_ap": _number(value),
                "gain": _number(value) - _number(base),
                "method": method,
            }
        )
    return pd.DataFrame(rows).sort_values("gain", ascending=False, kind="stable").reset_index(drop=True)


# ---- precision–recall curves (COCOeval on the stored detections) ---------------------------------------------
@lru_cache(maxsize=32)
def _evaluation(gt: tuple[str, int], detections: tuple[str, int]) -> EvalResult:
    # "faster" is the backend the pipeline's stored metrics come from; it equals pycocotools bit for bit
    return evaluate_detections(gt[0], detections[0], backend="faster")


def evaluation(runs: str | os.PathLike, role: str, seed: int = 0, report: dict[str, Any] | None = None) -> EvalResult:
    """COCOeval of a run's stored test detections (cached per file version: the result is shared, read it only).
    ``report``: take the run it names (see :func:`drkd_viz.analysis.models.run_dir`)."""
    return _evaluation(
        file_stamp(ground_truth_file(runs, report)), file_stamp(detections_file(runs, role, seed, report))
    )


def pr_curves(
    runs: str | os.PathLike,
    roles: tuple[str, ...] = DEFAULT_ROLES,
    seed: int = 0,
    iou: float | None = None,
    report: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """COCO precision–recall curves of each model's stored test detections, per object size.

    COCOeval (``maxDets=100``) gives interpolated precision at 101 recall points for every IoU threshold,
    class and area range. The curve here is, at each recall point, the mean over the classes that have ground
    truth of that size and over IoU thresholds 0.50:0.05:0.95 (``iou=None``), or at one threshold
    (e.g. ``iou=0.5``). So the mean of a curve over its 101 points is exactly COCO's AP / APs / APm / APl
    (or AP50 …) for that area.

    Columns: ``model``, ``area`` (all, small, medium, large), ``iou`` (which thresholds, as text), ``recall``,
    ``precision``; NaN precision where
    the test split has no ground truth of that size.
    """
    frames = []
    for role in roles:
        result = evaluation(runs, role, seed, report)
        precision = result.precision  # T x R x K x A x M
        if iou is not None:
            thresholds = np.linspace(0.5, 0.95, precision.shape[0])
            match = np.where(np.isclose(thresholds, iou))[0]
            if not match.size:
                raise UserError(f"iou must be one of COCO's thresholds 0.50, 0.55, …, 0.95 (or None), got {iou}")
            precision = precision[match]
        label = "0.50:0.95" if iou is None else f"{iou:.2f}"
        recall_points = np.linspace(0.0, 1.0, precision.shape[1])
        for a, area in enumerate(AREA_NAMES):
            p = precision[:, :, :, a, -1]  # maxDets 100 is COCOeval's last
            valid = p > -1
            count = valid.sum(axis=(0, 2))
            curve = np.where(count > 0, np.where(valid, p, 0.0).sum(axis=(0, 2)) / np.maximum(count, 1), np.nan)
            frames.append(
                pd.DataFrame({"model": role, "area": area, "iou": label, "recall": recall_points, "precision": curve})
            )
    return pd.concat(frames, ignore_index=True)


# ---- which objects each model finds ------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _gt(gt: tuple[str, int]) -> dict[str, Any]:
    return read_json(gt[0], "ground-truth annotation file")


@lru_cache(maxsize=32)
def _detections_by_image(detections: tuple[str, int]) -> dict[int, list[dict]]:
    grouped: dict[int, list[dict]] = {}
    for det in read_json(detections[0], "detections file"):
        grouped.setdefault(det["image_id"], []).append(det)
    return grouped


@lru_cache(maxsize=64)
def _matching(gt: tuple[str, int], detections: tuple[str, int], iou: float) -> Matches:
    return match_detections(gt[0], detections[0], iou=iou, area="all")


def match_objects(
    runs: str | os.PathLike,
    role: str,
    seed: int = 0,
    iou: float = 0.5,
    score_threshold: float = 0.5,
    report: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Every non-crowd ground-truth object of the test split, and whether ``role``'s stored detections find it.

    The matching is COCOeval's own (:func:`drkd_viz.evaluation.match_detections`, all sizes): detections taken by
    descending score, each matched one to one to the unmatched object of its class it overlaps most with
    IoU ≥ ``iou``, crowd regions absorbing detections without counting. An object is *found* when its matched
    detection scores ≥ ``score_threshold`` (lower-scored detections cannot change a higher one's match, so this is
    COCOeval's matching at that operating point).

    Columns: ``image_id``, ``ann_id``, ``category_id``, ``category``, ``bbox`` (COCO x, y, w, h), ``area``,
    ``size`` (small / medium / large by annotation area, COCO thresholds), ``found``, ``score`` and ``iou`` of
    the matched detection (NaN when missed).
    """
    if not 0 < iou <= 1:
        raise UserError(f"iou must be in (0, 1], got {iou}")
    gt = file_stamp(ground_truth_file(runs, report))
    matching = _matching(gt, file_stamp(detections_file(runs, role, seed, report)), float(iou))
    names = {c["id"]: c["name"] for c in _gt(gt)["categories"]}
    rows = []
    for obj in matching.objects:
        found = obj["det_index"] >= 0 and obj["score"] >= score_threshold
        rows.append(
            {
                "image_id": obj["image_id"],
                "ann_id": obj["ann_id"],
                "category_id": obj["category_id"],
                "category": names[obj["category_id"]],
                "bbox": obj["bbox"],
                "area": obj["area"],
                "size": size_bucket(obj["area"]),
                "found": found,
                "score": obj["score"] if found else math.nan,
                "iou": obj["iou"] if found else math.nan,
            }
        )
    columns = ["image_id", "ann_id", "category_id", "category", "bbox", "area", "size", "found", "score", "iou"]
    table = pd.DataFrame(rows, columns=columns)
    table.attrs = {"role": role, "iou": float(iou), "score_threshold": float(score_threshold)}
    return table


def image_detections(
    runs: str | os.PathLike,
    role: str,
    image_id: int,
    seed: int = 0,
    score_threshold: float = 0.5,
    report: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """A run's stored test detections on one image with score ≥ ``score_threshold``, highest first.
    Columns: ``bbox`` (COCO x, y, w, h), ``score``, ``category_id``, ``category``."""
    names = {c["id"]: c["name"] for c in _gt(file_stamp(ground_truth_file(runs, report)))["categories"]}
    dets = _detections_by_image(file_stamp(detections_file(runs, role, seed, report))).get(image_id, [])
    rows = [
        {
            "bbox": tuple(float(v) for v in d["bbox"]),
            "score": float(d["score"]),
            "category_id": d["category_id"],
            "category": names.get(d["category_id"], str(d["category_id"])),
        }
        for d in dets
        if d["score"] >= score_threshold
    ]
    table = pd.DataFrame(rows, columns=["bbox", "score", "category_id", "category"])
    return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def found_vs_missed(
    runs: str | os.PathLike,
    seed: int = 0,
    size: str = "small",
    method: str = "drkd",
    reference: str = "baseline",
    iou: float = 0.5,
    score_threshold: float = 0.5,
    report: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Objects of ``size`` (or ``"all"``) that exactly one of two models finds, in both directions: found by
    ``method`` and missed by ``reference``, and found by ``reference`` and missed by ``method`` (distillation
    also loses objects; both lists are shown so a gain is not read off the first alone).

    Columns: ``case`` ("<method> found, <reference> missed" or the reverse), ``image_id``, ``ann_id``,
    ``category``, ``bbox``, ``area``, ``size``, ``<method>_score``, ``<reference>_score`` and
    ``teacher_found`` (None when the runs folder has no teacher). See :func:`match_objects` for "found".
    """
    if size not in SIZE_KEYS:
        raise UserError(f"size must be one of {list(SIZE_KEYS)}, got {size!r}")
    a = match_objects(runs, method, seed, iou, score_threshold, report)
    b = match_objects(runs, reference, seed, iou, score_threshold, report)
    keep = a["size"] == size if size != "all" else np.ones(len(a), bool)
    try:
        teacher = match_objects(runs, "teacher", seed, iou, score_threshold, report)["found"].to_numpy()
    except UserError:
        teacher = np.full(len(a), None)
    table = a[["image_id", "ann_id", "category", "bbox", "area", "size"]].copy()
    table[f"{method}_score"], table[f"{reference}_score"] = a["score"], b["score"]
    table["teacher_found"] = teacher
    gained = keep & a["found"].to_numpy() & ~b["found"].to_numpy()
    lost = keep & ~a["found"].to_numpy() & b["found"].to_numpy()
    table.insert(
        0, "case", np.where(gained, f"{method} found, {reference} missed", f"{reference} found, {method} missed")
    )
    table = table[gained | lost].reset_index(drop=True)
    table.attrs = {
        "size": size,
        "method": method,
        "reference": reference,
        "iou": iou,
        "score_threshold": score_threshold,
    }
    return table
