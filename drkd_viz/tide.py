"""TIDE's error analysis of one detector: why it loses AP50, per object size, and its confusion matrix.

TIDE (Bolya et al., ECCV 2020) looks at every false positive and every missed object at IoU 0.5 and names one
cause for each, then reports how much AP50 would come back if every error of one type were fixed:

- **cls** (classification): the box overlaps an object of another class with IoU ≥ 0.5;
- **loc** (localisation): the box overlaps an object of its own class with 0.1 ≤ IoU ≤ 0.5;
- **both**: neither of those, nor background nor duplicate (a wrong class *and* a poor box, usually);
- **dupe** (duplicate): the box would be a true positive, but a higher-scored detection took its object;
- **bkg** (background): the box overlaps no object with IoU > 0.1;
- **miss**: an object that no detection found and no classification or localisation error was aimed at.

Fixing: a classification or localisation error aimed at an object nothing found becomes a true positive (only
the highest-scored one per object; the others and those aimed at found objects are dropped); the other
false-positive types are dropped; fixing a miss removes the object from the ground truth. The AP recovered is the
fixed AP minus the AP, floored at 0, one type at a time (TIDE's main, non-progressive summary). Two special rows
tell what perfect precision (every false positive dropped) and perfect recall (every missed object removed)
would give.

Where this deviates from the ``tidecv`` package, and why (``bench/error_analysis.py`` measures the difference):

- The true positives are COCOeval's own (:func:`drkd_viz.evaluation.match_detections_by_area`): its greedy rule,
  crowd regions and at most ``max_dets`` detections per image *and class*, where tidecv keeps ``max_dets`` per
  image. So the AP before fixing is exactly COCOeval's AP50, for every size.
- AP is COCOeval's: classes with no ground truth in the range do not count (tidecv counts a class with only false
  positives as AP 0).
- Sizes follow COCOeval's area ranges: objects outside the range are ignored (a detection matched to one is
  ignored), and so are unmatched detections outside the range. The classification, localisation and duplicate
  tests look only at the objects counted in the range; the background test at every non-crowd object, so a
  poorly placed box of a medium object is not called background in the small-object table (it is "both").

``error_breakdown`` works on a COCO ground truth and a results list; ``confusion_matrix`` counts which class each
object was taken for. :mod:`drkd_viz.analysis.detection_errors` runs both on the stored detections of a runs
folder and puts the models of a report side by side.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pycocotools import mask as mask_utils

from drkd_viz.data.statistics import size_bucket
from drkd_viz.data.validation import read_json, validate_coco
from drkd_viz.errors import UserError
from drkd_viz.evaluation import AREA_NAMES, Matches, match_detections_by_area, validate_detections

ERROR_TYPES: tuple[str, ...] = ("cls", "loc", "both", "dupe", "bkg", "miss")  # TIDE's order
SPECIAL_TYPES: tuple[str, ...] = ("false_positives", "false_negatives")
ERROR_LABELS: dict[str, str] = {
    "cls": "classification",
    "loc": "localisation",
    "both": "class + box",
    "dupe": "duplicate",
    "bkg": "background",
    "miss": "missed",
    "false_positives": "all false positives",
    "false_negatives": "all missed objects",
}
FOREGROUND_IOU = 0.5  # TIDE's t_f: a true positive, and the threshold its AP (AP50) uses
BACKGROUND_IOU = 0.1  # TIDE's t_b: below it a box overlaps nothing
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCOeval's recThrs


@dataclass
class ErrorBreakdown:
    """TIDE's error analysis of one model on one area range. AP values are fractions in [0, 1].

    ``detections``: every detection COCOeval ranked, with its ``outcome`` (``tp``, ``ignored`` or an error type)
    and ``target`` (the object a tp matched, or a cls / loc / dupe error was aimed at; -1 otherwise).
    ``objects``: every object counted in the range, with ``outcome`` ``found`` (matched by a true positive),
    ``miss``, or ``cls`` / ``loc`` when a false positive was aimed at it (a fix could find it)."""

    area: str
    ap: float  # AP at IoU 0.5 (COCOeval's AP50 for the range); nan when the range has no ground truth
    recovered: dict[str, float]  # ERROR_TYPES + SPECIAL_TYPES -> AP the fix gives back
    counts: dict[str, int]  # ERROR_TYPES -> number of errors
    detections: pd.DataFrame = field(repr=False)
    objects: pd.DataFrame = field(repr=False)


def _iou_xywh(a: np.ndarray, b: np.ndarray, crowd: bool = False) -> np.ndarray:
    """Pairwise IoU of COCO boxes (x, y, w, h) by pycocotools itself, the IoU COCOeval matches with; with
    ``crowd`` the share of each box of ``a`` inside each region of ``b`` (COCO's rule for crowd regions)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_utils.iou(a.astype(np.float64), b.astype(np.float64), [int(crowd)] * len(b)))


def _average_precision(
    order: np.ndarray, keep: np.ndarray, classes: np.ndarray, is_tp: np.ndarray, positives: dict[int, int]
) -> float:
    """COCOeval's accumulate at one IoU threshold and area: per class, the kept detections in ``order`` (COCOeval's
    ranking: score, then image, then detection), precision made monotone, read at 101 recall points; the mean
    over the classes in ``positives`` (class -> number of objects)."""
    ranked_keep, ranked_classes, ranked_tp = keep[order], classes[order], is_tp[order]
    aps = []
    for cls, npos in positives.items():
        if npos <= 0:
            # every object of the class was removed by a fix: nothing is left to find (tidecv scores it 0)
            aps.append(0.0)
            continue
        tp_flags = ranked_tp[ranked_keep & (ranked_classes == cls)]
        tp = np.cumsum(tp_flags, dtype=float)
        fp = np.cumsum(~tp_flags, dtype=float)
        recall = tp / npos
        precision = tp / (tp + fp + np.spacing(1))
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        where = np.searchsorted(recall, _RECALL_POINTS, side="left")
        q = np.zeros(len(_RECALL_POINTS))
        valid = where < len(precision)
        q[valid] = precision[where[valid]]
        aps.append(float(q.mean()))
    return float(np.mean(aps)) if aps else math.nan


def _classify(matches: Matches, gt: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """TIDE's tests on COCOeval's matches of one area range: the outcome of every ranked detection and of every
    counted object (see the module docstring)."""
    counted: dict[int, list[dict]] = defaultdict(list)  # image -> objects counted in this range
    for obj in matches.objects:
        counted[obj["image_id"]].append(obj)
    every: dict[int, list[tuple[float, ...]]] = defaultdict(list)  # image -> every non-crowd box
    for ann in gt["annotations"]:
        if not ann.get("iscrowd", 0):
            every[ann["image_id"]].append(tuple(ann["bbox"]))
    used = {obj["ann_id"] for obj in matches.objects if obj["det_index"] >= 0}
    by_image: dict[int, list[dict]] = defaultdict(list)
    for det in matches.detections:
        by_image[det["image_id"]].append(det)
    detections: list[dict[str, Any]] = []
    for image_id, dets in by_image.items():
        objects = counted.get(image_id, [])
        det_boxes = np.array([d["bbox"] for d in dets], dtype=float).reshape(-1, 4)
        iou_any = _iou_xywh(det_boxes, np.array(every.get(image_id, []), dtype=float).reshape(-1, 4))
        any_max = iou_any.max(axis=1) if iou_any.shape[1] else np.zeros(len(dets))
        outcome = np.array([d["outcome"] for d in dets], dtype=object)
        target = np.array([d["ann_id"] if d["outcome"] == "tp" else -1 for d in dets], dtype=np.int64)
        fp = outcome == "fp"
        if objects:
            # TIDE's tests, for every detection of the image at once (only the false positives' are used)
            obj_ids = np.array([o["ann_id"] for o in objects], dtype=np.int64)
            obj_used = np.array([o["ann_id"] in used for o in objects], dtype=bool)
            iou = _iou_xywh(det_boxes, np.array([o["bbox"] for o in objects], dtype=float).reshape(-1, 4))
            same = (
                np.array([d["category_id"] for d in dets])[:, None]
                == np.array([o["category_id"] for o in objects])[None, :]
            )
            cls_iou, other_iou, dupe_iou = iou * same, iou * ~same, iou * (same & obj_used[None, :])
            rows = np.arange(len(dets))
            loc_best, other_best, dupe_best = cls_iou.argmax(1), other_iou.argmax(1), dupe_iou.argmax(1)
            is_loc = fp & (cls_iou[rows, loc_best] >= BACKGROUND_IOU) & (cls_iou[rows, loc_best] <= FOREGROUND_IOU)
            is_cls = fp & ~is_loc & (other_iou[rows, other_best] >= FOREGROUND_IOU)
            is_dupe = fp & ~is_loc & ~is_cls & (dupe_iou[rows, dupe_best] >= FOREGROUND_IOU)
            for mask, kind, best in (
                (is_loc, "loc", loc_best),
                (is_cls, "cls", other_best),
                (is_dupe, "dupe", dupe_best),
            ):
                outcome[mask], target[mask] = kind, obj_ids[best[mask]]
            fp = fp & ~is_loc & ~is_cls & ~is_dupe
        outcome[fp & (any_max <= BACKGROUND_IOU)] = "bkg"
        outcome[fp & (any_max > BACKGROUND_IOU)] = "both"
        for det, kind, aim in zip(dets, outcome, target, strict=True):
            detections.append({**det, "outcome": kind, "target": int(aim)})
    detections.sort(key=lambda d: d["det_index"])
    aimed = {
        d["target"]: d["outcome"]
        for d in sorted(detections, key=lambda d: d["score"])
        if d["outcome"] in ("cls", "loc") and d["target"] not in used
    }  # the highest-scored one wins
    objects_out = [
        {**obj, "outcome": "found" if obj["ann_id"] in used else aimed.get(obj["ann_id"], "miss")}
        for obj in matches.objects
    ]
    return detections, objects_out


@dataclass
class _Outcomes:
    """One area range's classified detections and objects as arrays, with what every fix needs precomputed."""

    score: np.ndarray
    classes: np.ndarray
    outcome: np.ndarray  # strings
    order: np.ndarray  # COCOeval's ranking of the detections
    fixable: np.ndarray  # the highest-scored cls / loc error aimed at each unfound object
    target_class: np.ndarray  # the class of the object a detection is aimed at (-1: none)
    object_classes: np.ndarray
    object_outcome: np.ndarray

    @classmethod
    def of(cls, detections: list[dict], objects: list[dict]) -> _Outcomes:
        unfound = {o["ann_id"]: o["category_id"] for o in objects if o["outcome"] != "found"}
        best: dict[int, int] = {}  # unfound object -> position of the highest-scored cls / loc error aimed at it
        for i in sorted(range(len(detections)), key=lambda i: (-detections[i]["score"], detections[i]["det_index"])):
            d = detections[i]
            if d["outcome"] in ("cls", "loc") and d["target"] in unfound:
                best.setdefault(d["target"], i)
        fixable = np.zeros(len(detections), dtype=bool)
        fixable[list(best.values())] = True
        score = np.array([d["score"] for d in detections], dtype=float)
        image = np.array([d["image_id"] for d in detections])
        index = np.array([d["det_index"] for d in detections])
        return cls(
            score=score,
            classes=np.array([d["category_id"] for d in detections], dtype=np.int64),
            outcome=np.array([d["outcome"] for d in detections], dtype=object),
            order=np.lexsort((index, image, -score)) if len(detections) else np.zeros(0, dtype=np.int64),
            fixable=fixable,
            target_class=np.array([unfound.get(d["target"], -1) for d in detections], dtype=np.int64),
            object_classes=np.array([o["category_id"] for o in objects], dtype=np.int64),
            object_outcome=np.array([o["outcome"] for o in objects], dtype=object),
        )


def _fixed_ap(o: _Outcomes, fix: str | None) -> float:
    """The AP after fixing every error of type ``fix`` (None: as it is), by TIDE's rules (module docstring)."""
    is_tp = o.outcome == "tp"
    keep = o.outcome != "ignored"
    classes = o.classes
    if fix == "false_positives":
        keep = keep & is_tp
    elif fix in ("cls", "loc"):
        fixing = o.outcome == fix
        promote = fixing & o.fixable  # becomes a true positive; the other errors of the type are dropped
        keep = keep & (~fixing | promote)
        is_tp = is_tp | promote
        classes = np.where(promote, o.target_class, classes)  # a fixed classification error takes the object's class
    elif fix in ("both", "dupe", "bkg"):
        keep = keep & (o.outcome != fix)
    removed = {"miss": ("miss",), "false_negatives": ("miss", "cls", "loc")}.get(fix or "", ())
    counted = ~np.isin(o.object_outcome, removed) if removed else np.ones(len(o.object_classes), dtype=bool)
    # a class stays in the mean even when a fix removes every object of it
    positives = {int(c): int((counted & (o.object_classes == c)).sum()) for c in np.unique(o.object_classes)}
    return _average_precision(o.order, keep, classes, is_tp, positives)


def error_breakdown(
    gt: dict | str | os.PathLike,
    detections: list[dict] | str | os.PathLike,
    areas: tuple[str, ...] = AREA_NAMES,
    max_dets: int = 100,
) -> dict[str, ErrorBreakdown]:
    """TIDE's error breakdown of ``detections`` (a COCO results list or its file) against ``gt`` at IoU 0.5, for
    each area range, keyed by area (COCOeval runs once for all of them)."""
    gt_data = read_json(gt, "ground-truth annotation file") if not isinstance(gt, dict) else gt
    # the matching checks the ground truth and the detections, and reads them from files
    by_area = match_detections_by_area(gt_data, detections, FOREGROUND_IOU, areas, max_dets)
    out = {}
    for area, matches in by_area.items():
        dets, objects = _classify(matches, gt_data)
        outcomes = _Outcomes.of(dets, objects)
        base = _fixed_ap(outcomes, None)
        recovered = {}
        for kind in (*ERROR_TYPES, *SPECIAL_TYPES):
            gain = _fixed_ap(outcomes, kind) - base if objects else math.nan
            recovered[kind] = max(gain, 0.0) if kind in ERROR_TYPES else gain
        counts = {kind: sum(d["outcome"] == kind for d in dets) for kind in ERROR_TYPES[:-1]}
        counts["miss"] = sum(o["outcome"] == "miss" for o in objects)
        det_columns = ["det_index", "image_id", "category_id", "bbox", "score", "outcome", "target", "iou"]
        obj_columns = ["image_id", "ann_id", "category_id", "bbox", "area", "det_index", "score", "iou", "outcome"]
        out[area] = ErrorBreakdown(
            area=area,
            ap=base if objects else math.nan,
            recovered=recovered,
            counts=counts,
            detections=pd.DataFrame(dets, columns=det_columns),
            objects=pd.DataFrame(objects, columns=obj_columns),
        )
    return out


# ---- confusion matrix ------------------------------------------------------------------------------------------
@dataclass
class Confusion:
    """Counts of (true class, predicted class) with a background row and column, at one IoU and score threshold.
    ``labels``: the class names, then "background". Row = what was there, column = what the model said: a
    missed object counts in the background column, a detection of nothing in the background row."""

    labels: list[str]
    counts: np.ndarray  # (K + 1) x (K + 1) integers

    def normalised(self) -> np.ndarray:
        """Each class row divided by that class's number of objects (a row sums to 1: found, confused, missed);
        the background row divided by its own sum (what the false positives were called), as MMDetection does."""
        totals = self.counts.sum(axis=1, keepdims=True)
        return np.divide(self.counts, totals, out=np.zeros(self.counts.shape), where=totals > 0)

    def table(self, normalised: bool = True) -> pd.DataFrame:
        values = self.normalised() if normalised else self.counts
        return pd.DataFrame(
            values, index=pd.Index(self.labels, name="true"), columns=pd.Index(self.labels, name="predicted")
        )


def confusion_matrix(
    gt: dict | str | os.PathLike,
    detections: list[dict] | str | os.PathLike,
    iou: float = FOREGROUND_IOU,
    score_threshold: float = 0.5,
    size: str = "all",
) -> Confusion:
    """The detections scoring ≥ ``score_threshold``, highest first, each matched one to one to an unmatched
    non-crowd object with IoU ≥ ``iou``: of its own class if it overlaps one so, else the best of another class
    (a confusion). Unmatched detections count as background (duplicates and poor boxes included); unmatched
    objects as missed. ``size`` (small, medium, large) keeps the objects of that size and the background
    detections whose box has that size. Detections on crowd regions (IoU ≥ ``iou``) are left out."""
    gt_data = read_json(gt, "ground-truth annotation file") if not isinstance(gt, dict) else gt
    gt_data, _ = validate_coco(gt_data, source="ground truth", fix=False)
    if isinstance(detections, (str, os.PathLike)):
        detections = read_json(Path(detections), "detections file")
    detections = validate_detections(detections, gt_data)
    if size not in AREA_NAMES:
        raise UserError(f"size must be one of {list(AREA_NAMES)}, got {size!r}")
    categories = [c["id"] for c in gt_data["categories"]]
    index = {c: k for k, c in enumerate(categories)}
    background = len(categories)
    counts = np.zeros((background + 1, background + 1), dtype=np.int64)
    objects: dict[int, list[dict]] = defaultdict(list)
    for ann in gt_data["annotations"]:
        objects[ann["image_id"]].append(ann)
    dets: dict[int, list[dict]] = defaultdict(list)
    for det in detections:
        if det["score"] >= score_threshold:
            dets[det["image_id"]].append(det)

    def keep(area: float) -> bool:
        return size == "all" or size_bucket(area) == size

    for image in gt_data["images"]:
        anns = [a for a in objects.get(image["id"], []) if not a.get("iscrowd", 0)]
        crowd = [a for a in objects.get(image["id"], []) if a.get("iscrowd", 0)]
        ranked = sorted(dets.get(image["id"], []), key=lambda d: -d["score"])
        boxes = np.array([d["bbox"] for d in ranked], dtype=float).reshape(-1, 4)
        overlap = _iou_xywh(boxes, np.array([a["bbox"] for a in anns], dtype=float).reshape(-1, 4))
        # each detection's share inside a crowd region, for the whole image at once (COCO's crowd rule)
        in_crowd = _iou_xywh(boxes, np.array([a["bbox"] for a in crowd], dtype=float).reshape(-1, 4), crowd=True)
        taken = np.zeros(len(anns), dtype=bool)
        classes = np.array([a["category_id"] for a in anns])
        for i, det in enumerate(ranked):
            free = overlap[i] * ~taken if len(anns) else overlap[i]
            same = np.where(classes == det["category_id"], free, 0.0) if len(anns) else free
            if len(anns) and same.max() >= iou:
                j = int(same.argmax())
            elif len(anns) and free.max() >= iou:
                j = int(free.argmax())
            else:
                if crowd and in_crowd[i].max() >= iou:
                    continue
                area = det["bbox"][2] * det["bbox"][3]
                if keep(area):
                    counts[background, index[det["category_id"]]] += 1
                continue
            taken[j] = True
            if keep(anns[j].get("area", anns[j]["bbox"][2] * anns[j]["bbox"][3])):
                counts[index[anns[j]["category_id"]], index[det["category_id"]]] += 1
        for j, ann in enumerate(anns):
            if not taken[j] and keep(ann.get("area", ann["bbox"][2] * ann["bbox"][3])):
                counts[index[ann["category_id"]], background] += 1
    names = {c["id"]: c["name"] for c in gt_data["categories"]}
    return Confusion([*(names[c] for c in categories), "background"], counts)
