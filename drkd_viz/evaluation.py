"""Exact COCO box evaluation through pycocotools (the reference) or faster-coco-eval (fast).

Both backends run COCO's matching and accumulation; the 12 standard numbers are then summarised
from their precision/recall arrays by one function (:func:`summarize`, COCOeval.summarize's
formulas). The arrays differ in one known place: pycocotools divides by ``tp + fp + ε``, which
turns the precision of a top-ranked true positive (tp + fp = 1) into 1 − 2⁻⁵² instead of 1; for
any larger denominator ε vanishes in float64. We snap that one value back to 1, after which the
two backends agree bit for bit (tests and ``bench/eval_speed.py`` check it). The result differs
from pycocotools' own printout by at most 2.2e-16.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from drkd_viz.data.statistics import MEDIUM_AREA, SMALL_AREA
from drkd_viz.data.validation import read_json, validate_coco
from drkd_viz.errors import DetectionsError
from drkd_viz.utils.io import atomic_write_json

METRIC_KEYS: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)  # COCOeval.stats order
AREA_NAMES: tuple[str, ...] = ("all", "small", "medium", "large")  # COCOeval's areaRng order
Backend = Literal["pycocotools", "faster"]
BACKENDS: tuple[str, ...] = ("pycocotools", "faster")
MAX_LISTED = 10


@dataclass
class EvalResult:
    stats: dict[str, float]  # METRIC_KEYS -> value in [0, 1], or -1 where COCO has nothing to measure
    per_class: dict[str, float | None]  # category name -> AP@[.5:.95]; None when it has no ground truth
    gt_counts: dict[str, int]  # non-crowd ground-truth boxes per size
    detection_counts: dict[str, int]  # detections per size (by box area)
    backend: str
    precision: np.ndarray = field(repr=False)  # COCOeval eval['precision']: T x R x K x A x M
    recall: np.ndarray = field(repr=False)  # COCOeval eval['recall']: T x K x A x M
    category_names: list[str] = field(default_factory=list, repr=False)  # the K axis

    def to_json(self) -> dict[str, Any]:
        return {
            **self.stats,
            "per_class": self.per_class,
            "counts": {"ground_truth": self.gt_counts, "detections": self.detection_counts},
            "backend": self.backend,
        }


def _require(cond: bool, problems: list[str], message: str) -> bool:
    if not cond:
        problems.append(message)
    return cond


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_detections(detections: Any, gt: dict, source: str = "detections") -> list[dict]:
    """Check a COCO results list against the ground truth's image and category ids."""
    if not isinstance(detections, list):
        raise DetectionsError(
            f"{source}: expected a JSON list of detections "
            f"({{image_id, category_id, bbox: [x, y, w, h], score}}), got {type(detections).__name__}"
        )
    image_ids = {img["id"] for img in gt["images"]}
    cat_ids = {c["id"] for c in gt["categories"]}
    problems: list[str] = []
    for i, det in enumerate(detections):
        if len(problems) > MAX_LISTED:
            break
        where = f"[{i}]"
        if not _require(isinstance(det, dict), problems, f"{where}: expected an object, got {type(det).__name__}"):
            continue
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in det]
        if not _require(not missing, problems, f"{where}: missing keys {missing} (has {sorted(det)})"):
            continue
        _require(
            det["image_id"] in image_ids,
            problems,
            f"{where}.image_id: {det['image_id']!r} is not an image of the ground truth",
        )
        _require(
            det["category_id"] in cat_ids,
            problems,
            f"{where}.category_id: {det['category_id']!r} is not a category of the ground truth",
        )
        box = det["bbox"]
        if _require(
            isinstance(box, list) and len(box) == 4 and all(_finite(v) for v in box),
            problems,
            f"{where}.bbox: expected 4 finite numbers [x, y, width, height], got {box!r}",
        ):
            _require(box[2] >= 0 and box[3] >= 0, problems, f"{where}.bbox: negative width or height in {box!r}")
        _require(_finite(det["score"]), problems, f"{where}.score: expected a finite number, got {det['score']!r}")
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems[:MAX_LISTED])
        more = "\n  - … (stopped listing)" if len(problems) > MAX_LISTED else ""
        raise DetectionsError(
            f"{source} cannot be evaluated:\n{listed}{more}\n"
            "Detections must be a COCO results list for the same annotation file."
        )
    return detections


def _size_counts(boxes_and_areas: list[float]) -> dict[str, int]:
    a = np.asarray(boxes_and_areas, dtype=float)
    return {
        "small": int((a < SMALL_AREA).sum()),
        "medium": int(((a >= SMALL_AREA) & (a < MEDIUM_AREA)).sum()),
        "large": int((a >= MEDIUM_AREA).sum()),
    }


_ONE_MINUS_EPS = 1.0 / (1.0 + np.spacing(1))  # pycocotools' precision for tp = 1, fp = 0


def summarize(precision: np.ndarray, recall: np.ndarray, iou_thrs: np.ndarray, max_dets: list[int]) -> np.ndarray:
    """COCO's 12 numbers from COCOeval's accumulated arrays, with COCOeval.summarize's formulas:
    the mean over entries > -1 (-1 marks "nothing to measure"), or -1 if there are none."""

    def mean(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(np.mean(valid)) if valid.size else -1.0

    def ap(area: int = 0, iou: float | None = None) -> float:
        p = precision if iou is None else precision[np.where(iou_thrs == iou)[0]]
        return mean(p[:, :, :, area, max_dets.index(100)])

    def ar(area: int = 0, dets: int = 100) -> float:
        return mean(recall[:, :, area, max_dets.index(dets)])

    return np.array(
        [
            ap(),
            ap(iou=0.5),
            ap(iou=0.75),
            ap(1),
            ap(2),
            ap(3),
            ar(dets=1),
            ar(dets=10),
            ar(),
            ar(1),
            ar(2),
            ar(3),
        ]
    )


def _run_cocoeval(gt: dict, detections: list[dict], backend: str):
    """Returns (stats, precision, recall, category ids of the K axis)."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval as Evaluator
    elif backend == "faster":
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as Evaluator
    else:
        raise DetectionsError(f"unknown evaluation backend {backend!r}; choose one of {list(BACKENDS)}")
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if detections:
            coco_dt = coco_gt.loadRes([dict(d) for d in detections])  # loadRes writes into its input
        else:  # pycocotools cannot load an empty list: an empty result set scores 0 everywhere
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        evaluator = Evaluator(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    precision = np.array(evaluator.eval["precision"], dtype=np.float64)
    precision[precision == _ONE_MINUS_EPS] = 1.0  # undo pycocotools' ε (see the module docstring)
    recall = np.array(evaluator.eval["recall"], dtype=np.float64)
    params = evaluator.params
    stats = summarize(precision, recall, np.asarray(params.iouThrs), list(params.maxDets))
    return stats, precision, recall, list(params.catIds)


def evaluate_detections(
    gt: dict | str | os.PathLike, detections: list[dict] | str | os.PathLike, backend: Backend = "pycocotools"
) -> EvalResult:
    """COCO box evaluation of ``detections`` (a results list or its JSON file) against ``gt``
    (a COCO dict or its JSON file). The ground truth reaches COCOeval unchanged."""
    gt_source = str(gt) if not isinstance(gt, dict) else "ground truth"
    gt_data = read_json(gt, "ground-truth annotation file") if not isinstance(gt, dict) else gt
    gt_data, _ = validate_coco(gt_data, source=gt_source, fix=False)
    det_source = "detections"
    if isinstance(detections, (str, os.PathLike)):
        det_source = str(detections)
        path = Path(detections)
        if not path.is_file():
            raise DetectionsError(f"detections file not found: {path}")
        detections = read_json(path, "detections file")
    detections = validate_detections(detections, gt_data, source=det_source)

    stats, precision, recall, cat_ids = _run_cocoeval(gt_data, detections, backend)
    names = {c["id"]: c["name"] for c in gt_data["categories"]}
    per_class: dict[str, float | None] = {}
    for k, cid in enumerate(cat_ids):
        p = precision[:, :, k, 0, -1]  # all IoUs and recalls, area "all", maxDets 100
        per_class[names[cid]] = float(p[p > -1].mean()) if (p > -1).any() else None
    gt_areas = [a.get("area", a["bbox"][2] * a["bbox"][3]) for a in gt_data["annotations"] if not a.get("iscrowd", 0)]
    return EvalResult(
        stats={k: float(v) for k, v in zip(METRIC_KEYS, stats, strict=True)},
        per_class=per_class,
        gt_counts=_size_counts(gt_areas),
        detection_counts=_size_counts([d["bbox"][2] * d["bbox"][3] for d in detections]),
        backend=backend,
        precision=precision,
        recall=recall,
        category_names=[names[c] for c in cat_ids],
    )


@dataclass
class Matches:
    """COCOeval's own one-to-one matching at one IoU threshold and area range (pycocotools' ``evalImgs``).

    ``objects``: one row per ground-truth object COCOeval counts there (crowd regions and objects outside the area
    range are ignored, as in AP): ``image_id``, ``ann_id``, ``category_id``, ``bbox``, ``area``, and the matched
    detection's ``det_index`` (its position in the detections list; -1 when missed), ``score`` and ``iou``.
    ``detections``: one row per detection COCOeval ranked (the top ``max_dets`` per image and class): ``det_index``,
    ``image_id``, ``category_id``, ``bbox``, ``score``, ``outcome`` (``tp``; ``fp``; ``ignored``: on a crowd
    region or an ignored object, or unmatched and outside the area range), the matched ``ann_id`` (-1) and ``iou``.
    Plain lists of dicts; :mod:`drkd_viz.analysis` turns them into tables."""

    iou: float
    area: str
    objects: list[dict[str, Any]]
    detections: list[dict[str, Any]]


def match_detections(
    gt: dict | str | os.PathLike,
    detections: list[dict] | str | os.PathLike,
    iou: float = 0.5,
    area: str = "all",
    max_dets: int = 100,
) -> Matches:
    """Which detection matched which object, taken from COCOeval itself (pycocotools, the reference) at IoU
    threshold ``iou`` (any value in (0, 1], not only COCO's ten) and area range ``area`` (all, small, medium,
    large): the same greedy rule, crowd handling and ignore flags the AP beside it uses, so the true positives
    counted here are exactly those behind its recall."""
    return match_detections_by_area(gt, detections, iou, (area,), max_dets)[area]


def match_detections_by_area(
    gt: dict | str | os.PathLike,
    detections: list[dict] | str | os.PathLike,
    iou: float = 0.5,
    areas: tuple[str, ...] = AREA_NAMES,
    max_dets: int = 100,
) -> dict[str, Matches]:
    """:func:`match_detections` for several area ranges from one COCOeval run (it computes each image's IoUs
    once and matches them once per range), keyed by area name."""
    if not 0 < iou <= 1:
        raise DetectionsError(f"iou must be in (0, 1], got {iou}")
    unknown = [a for a in areas if a not in AREA_NAMES]
    if unknown or not areas:
        raise DetectionsError(f"each area must be one of {list(AREA_NAMES)}, got {list(areas)}")
    gt_data = read_json(gt, "ground-truth annotation file") if not isinstance(gt, dict) else gt
    gt_data, _ = validate_coco(gt_data, source="ground truth", fix=False)
    if isinstance(detections, (str, os.PathLike)):
        detections = read_json(Path(detections), "detections file")
    detections = validate_detections(detections, gt_data)
    ranges = [_AREA_RANGES[AREA_NAMES.index(a)] for a in areas]
    if not detections:  # pycocotools cannot load an empty result list: every counted object is missed
        objects = _all_objects_missed(gt_data, areas, ranges)
        return {a: Matches(iou, a, objects[a], []) for a in areas}
    coco_gt, coco_dt, evaluator = _evaluate_images(gt_data, detections, iou, areas, ranges, max_dets)
    objects, rows = _matches_by_area(evaluator, coco_gt, coco_dt, areas)
    return {a: Matches(iou, a, objects[a], rows[a]) for a in areas}


_AREA_RANGES = ((0.0, 1e10), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e10))  # COCOeval's areaRng, in order


def _all_objects_missed(
    gt_data: dict, areas: tuple[str, ...], ranges: list[tuple[float, float]]
) -> dict[str, list[dict[str, Any]]]:
    """The object rows of each area range when there is no detection: every object COCOeval counts, unmatched."""
    objects: dict[str, list[dict[str, Any]]] = {a: [] for a in areas}
    for ann in gt_data["annotations"]:
        ann_area = ann.get("area", ann["bbox"][2] * ann["bbox"][3])
        for name, (low, high) in zip(areas, ranges, strict=True):
            if not ann.get("iscrowd", 0) and low <= ann_area <= high:
                objects[name].append(_object_row(ann, ann_area, -1, None, None))
    return objects


def _evaluate_images(
    gt_data: dict,
    detections: list[dict],
    iou: float,
    areas: tuple[str, ...],
    ranges: list[tuple[float, float]],
    max_dets: int,
) -> tuple[Any, Any, Any]:
    """COCOeval's per-image matching (``evaluate``, no ``accumulate``) at one IoU threshold for the area ranges;
    returns the ground truth and detections as pycocotools loaded them, and the evaluator."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_data
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(d) for d in detections])  # ids 1 … N in list order
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.iouThrs = np.array([iou])
        evaluator.params.maxDets = [max_dets]
        evaluator.params.areaRng = [list(r) for r in ranges]
        evaluator.params.areaRngLbl = list(areas)
        evaluator.evaluate()
    return coco_gt, coco_dt, evaluator


def _matches_by_area(
    evaluator: Any, coco_gt: Any, coco_dt: Any, areas: tuple[str, ...]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    """The object rows and detection rows of each area range, read from the evaluator's ``evalImgs``."""
    objects: dict[str, list[dict[str, Any]]] = {a: [] for a in areas}
    rows: dict[str, list[dict[str, Any]]] = {a: [] for a in areas}
    area_of = {tuple(r): a for r, a in zip(evaluator.params.areaRng, areas, strict=True)}
    for result in evaluator.evalImgs:
        if result is None:
            continue
        area = area_of[tuple(result["aRng"])]
        key = (result["image_id"], result["category_id"])
        matrix = evaluator.ious[key]  # detections by score (top max_dets) x objects in their stored order
        column = {g["id"]: j for j, g in enumerate(evaluator._gts[key])}
        objects[area] += _matched_object_rows(result, matrix, column, coco_gt, coco_dt)
        rows[area] += _detection_rows(result, matrix, column, coco_dt)
    for area in areas:
        objects[area].sort(key=lambda r: (r["image_id"], r["ann_id"]))
        rows[area].sort(key=lambda r: r["det_index"])
    return objects, rows


def _matched_object_rows(
    result: dict, matrix: np.ndarray, column: dict[int, int], coco_gt: Any, coco_dt: Any
) -> list[dict[str, Any]]:
    """One image and class's counted objects (ignored ones left out), each with the detection matched to it."""
    row_of = {d: i for i, d in enumerate(result["dtIds"])}
    found = []
    for j, ann_id in enumerate(result["gtIds"]):
        if result["gtIgnore"][j]:
            continue
        ann = coco_gt.anns[ann_id]
        det_id = int(result["gtMatches"][0][j])
        overlap = float(matrix[row_of[det_id], column[ann_id]]) if det_id else None
        score = float(coco_dt.anns[det_id]["score"]) if det_id else None
        found.append(_object_row(ann, ann.get("area", ann["bbox"][2] * ann["bbox"][3]), det_id - 1, score, overlap))
    return found


def _detection_rows(result: dict, matrix: np.ndarray, column: dict[int, int], coco_dt: Any) -> list[dict[str, Any]]:
    """One image and class's ranked detections, each with its outcome and the object it matched."""
    found = []
    for i, det_id in enumerate(result["dtIds"]):
        matched = int(result["dtMatches"][0][i])
        det = coco_dt.anns[det_id]
        outcome = "ignored" if result["dtIgnore"][0][i] else "tp" if matched else "fp"
        found.append(
            {
                "det_index": det_id - 1,
                "image_id": det["image_id"],
                "category_id": det["category_id"],
                "bbox": tuple(float(v) for v in det["bbox"]),
                "score": float(det["score"]),
                "outcome": outcome,
                "ann_id": matched if matched else -1,
                "iou": float(matrix[i, column[matched]]) if matched else None,
            }
        )
    return found


def _object_row(ann: dict, area: float, det_index: int, score: float | None, overlap: float | None) -> dict:
    return {
        "image_id": ann["image_id"],
        "ann_id": ann["id"],
        "category_id": ann["category_id"],
        "bbox": tuple(float(v) for v in ann["bbox"]),
        "area": float(area),
        "det_index": det_index,
        "score": score,
        "iou": overlap,
    }


def write_metrics(result: EvalResult, path: str | os.PathLike) -> Path:
    return atomic_write_json(path, result.to_json())


def perturbed_detections(gt: dict, seed: int = 0, false_per_image: int = 15) -> list[dict]:
    """Synthetic detections for tests, benchmarks and lessons on evaluation: every ground-truth box twice,
    jittered (12 % of its size), 20 % with a random class, plus random false positives per image."""
    rng = np.random.default_rng(seed)
    cats = [c["id"] for c in gt["categories"]]
    dets = []
    for ann in gt["annotations"]:
        for _ in range(2):
            x, y, w, h = ann["bbox"]
            j = rng.normal(0, 0.12, 4) * [w, h, w, h]
            cat = ann["category_id"] if rng.random() < 0.8 else int(rng.choice(cats))
            box = [float(x + j[0]), float(y + j[1]), float(max(w + j[2], 1.0)), float(max(h + j[3], 1.0))]
            dets.append({"image_id": ann["image_id"], "category_id": cat, "bbox": box, "score": float(rng.random())})
    for img in gt["images"]:
        for _ in range(false_per_image):
            x, y = rng.uniform(0, img["width"] - 10), rng.uniform(0, img["height"] - 10)
            box = [float(x), float(y), float(rng.uniform(3, 80)), float(rng.uniform(3, 80))]
            dets.append(
                {"image_id": img["id"], "category_id": int(rng.choice(cats)), "bbox": box, "score": float(rng.random())}
            )
    return dets
