"""Checks on COCO-format annotation files, with messages that say where the problem is and what to do.

Structural problems (missing keys, wrong types, unknown ids) raise :class:`DatasetError` listing up
to ten of them by JSON path. Fixable problems are fixed and counted in a :class:`ValidationReport`:
boxes with width or height <= 0 are skipped, boxes reaching beyond their image are clipped.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drkd_viz.errors import DatasetError

MAX_LISTED = 10


@dataclass
class ValidationReport:
    source: str
    images: int = 0
    annotations: int = 0
    crowd: int = 0
    skipped_degenerate: list[int] = field(default_factory=list)  # annotation ids
    clipped: list[int] = field(default_factory=list)  # annotation ids
    images_without_annotations: int = 0

    def summary(self) -> str:
        parts = [f"{self.images} images, {self.annotations} annotations ({self.crowd} crowd)"]
        if self.skipped_degenerate:
            parts.append(
                f"skipped {len(self.skipped_degenerate)} boxes with width or height <= 0 "
                f"(annotation ids {_head(self.skipped_degenerate)})"
            )
        if self.clipped:
            parts.append(
                f"clipped {len(self.clipped)} boxes reaching beyond their image (annotation ids {_head(self.clipped)})"
            )
        if self.images_without_annotations:
            parts.append(f"{self.images_without_annotations} images without annotations")
        return f"{self.source}: " + "; ".join(parts)


def _head(ids: list[int], n: int = 5) -> str:
    return ", ".join(map(str, ids[:n])) + (", …" if len(ids) > n else "")


class _Problems:
    def __init__(self, source: str):
        self.source = source
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def raise_if_any(self, hint: str) -> None:
        if not self.items:
            return
        listed = "\n".join(f"  - {m}" for m in self.items[:MAX_LISTED])
        more = f"\n  … and {len(self.items) - MAX_LISTED} more" if len(self.items) > MAX_LISTED else ""
        raise DatasetError(f"{self.source} is not a usable COCO annotation file:\n{listed}{more}\n{hint}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read_json(path: str | os.PathLike, what: str = "annotation file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not a UTF-8 text file; expected a COCO JSON {what}") from None


_FIX_HINT = "Fix the listed entries (COCO format: https://cocodataset.org/#format-data) and try again."
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox")


def validate_coco(data: Any, source: str = "annotations", fix: bool = True) -> tuple[dict, ValidationReport]:
    """Check a COCO instances dict. Returns a cleaned copy (degenerate boxes dropped, boxes clipped,
    ``area`` and ``iscrowd`` filled in where missing) and a report of what was changed.

    With ``fix=False`` the data is checked but returned unchanged (for evaluation ground truth,
    which must reach pycocotools exactly as given).
    """
    problems = _Problems(source)
    _check_top_level(data, source, problems)
    images = _check_images(data["images"], problems)
    categories = _check_categories(data["categories"], problems)
    # annotations are checked even when images/categories had problems, so one run lists them all
    report = ValidationReport(source=source, images=len(images))
    clean_annotations, unknown_categories = _check_annotations(
        data["annotations"], images, categories, problems, report, fix
    )
    if unknown_categories:
        problems.add(_unknown_categories_message(unknown_categories, categories))
    problems.raise_if_any(_FIX_HINT)

    with_annotations = {a["image_id"] for a in clean_annotations}
    report.images_without_annotations = sum(1 for i in images if i not in with_annotations)
    cleaned = dict(data)
    cleaned["annotations"] = clean_annotations
    return cleaned, report


def _check_top_level(data: Any, source: str, problems: _Problems) -> None:
    """Raise unless ``data`` is an object with the three lists the other checks walk through."""
    if not isinstance(data, dict):
        raise DatasetError(
            f"{source}: expected a JSON object with 'images', 'annotations' and 'categories', got {type(data).__name__}"
        )
    for key in ("images", "annotations", "categories"):
        if key not in data:
            problems.add(f"missing top-level key '{key}'")
        elif not isinstance(data[key], list):
            problems.add(f"'{key}' must be a list, got {type(data[key]).__name__}")
    problems.raise_if_any(_FIX_HINT)


def _check_images(entries: list, problems: _Problems) -> dict[int, dict]:
    """The images with an integer id, by id; what is wrong with any entry goes to ``problems``."""
    images: dict[int, dict] = {}
    for i, img in enumerate(entries):
        where = f"images[{i}]"
        if not isinstance(img, dict):
            problems.add(f"{where}: expected an object, got {type(img).__name__}")
            continue
        _check_image_keys(where, img, problems)
        if _is_int(img.get("id")):
            if img["id"] in images:
                problems.add(f"{where}.id: duplicate image id {img['id']}")
            images[img["id"]] = img
    return images


def _check_image_keys(where: str, img: dict, problems: _Problems) -> None:
    for key, check, kind in (
        ("id", _is_int, "an integer"),
        ("file_name", lambda v: isinstance(v, str), "a string"),
        ("width", _is_int, "a positive integer"),
        ("height", _is_int, "a positive integer"),
    ):
        if key not in img:
            problems.add(f"{where}: missing key '{key}'")
        elif not check(img[key]):
            problems.add(f"{where}.{key}: expected {kind}, got {img[key]!r}")
    if (
        all(k in img for k in ("width", "height"))
        and _is_int(img["width"])
        and _is_int(img["height"])
        and (img["width"] <= 0 or img["height"] <= 0)
    ):
        problems.add(f"{where}: width and height must be positive, got {img['width']}x{img['height']}")


def _check_categories(entries: list, problems: _Problems) -> dict[int, dict]:
    """The categories with a unique integer id, by id; what is wrong with any entry goes to ``problems``."""
    categories: dict[int, dict] = {}
    for i, cat in enumerate(entries):
        where = f"categories[{i}]"
        if not isinstance(cat, dict):
            problems.add(f"{where}: expected an object, got {type(cat).__name__}")
            continue
        if not _is_int(cat.get("id")):
            problems.add(f"{where}.id: expected an integer, got {cat.get('id')!r}")
        elif cat["id"] in categories:
            problems.add(f"{where}.id: duplicate category id {cat['id']}")
        else:
            categories[cat["id"]] = cat
        if not isinstance(cat.get("name"), str):
            problems.add(f"{where}.name: expected a string, got {cat.get('name')!r}")
    # said only when nothing else is wrong: broken entries already explain an empty result
    if not categories and not problems.items:
        problems.add("'categories' is empty: a detection dataset needs at least one category")
    return categories


def _check_annotations(
    entries: list,
    images: dict[int, dict],
    categories: dict[int, dict],
    problems: _Problems,
    report: ValidationReport,
    fix: bool,
) -> tuple[list[dict], dict[int, int]]:
    """The usable annotations (fixed when ``fix``) and the count of annotations per unknown category id;
    counts go to ``report``, what is wrong to ``problems``."""
    clean_annotations = []
    unknown_categories: dict[int, int] = {}
    for i, ann in enumerate(entries):
        if not _is_usable_annotation(f"annotations[{i}]", ann, images, categories, problems, unknown_categories):
            continue
        crowd = ann.get("iscrowd", 0)
        report.annotations += 1
        report.crowd += int(crowd == 1)
        if not fix or problems.items:  # nothing to fix in a file that will be refused
            clean_annotations.append(ann)
            continue
        clean = _fixed_annotation(ann, images[ann["image_id"]], crowd, report)
        if clean is not None:
            clean_annotations.append(clean)
    return clean_annotations, unknown_categories


def _is_usable_annotation(
    where: str,
    ann: Any,
    images: dict[int, dict],
    categories: dict[int, dict],
    problems: _Problems,
    unknown_categories: dict[int, int],
) -> bool:
    """Whether ``ann`` can be counted; unknown category ids are tallied in ``unknown_categories`` (reported once,
    all together), anything else wrong goes to ``problems``."""
    if not isinstance(ann, dict):
        problems.add(f"{where}: expected an object, got {type(ann).__name__}")
        return False
    for key in _ANNOTATION_KEYS:
        if key not in ann:
            problems.add(f"{where}: missing key '{key}'")
    if any(k not in ann for k in _ANNOTATION_KEYS):
        return False
    label = f"{where} (id {ann['id']!r})"
    if not _is_int(ann["id"]):
        problems.add(f"{label}.id: expected an integer")
    if ann["image_id"] not in images:
        problems.add(f"{label}.image_id: {ann['image_id']!r} is not the id of any entry in 'images'")
        return False
    if ann["category_id"] not in categories:
        unknown_categories[ann["category_id"]] = unknown_categories.get(ann["category_id"], 0) + 1
        return False
    box = ann["bbox"]
    if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
        problems.add(f"{label}.bbox: expected 4 finite numbers [x, y, width, height], got {box!r}")
        return False
    crowd = ann.get("iscrowd", 0)
    if crowd not in (0, 1):
        problems.add(f"{label}.iscrowd: expected 0 or 1, got {crowd!r}")
        return False
    if "area" in ann and not _is_number(ann["area"]):
        problems.add(f"{label}.area: expected a finite number, got {ann['area']!r}")
        return False
    return True


def _fixed_annotation(ann: dict, img: dict, crowd: Any, report: ValidationReport) -> dict | None:
    """A copy of ``ann`` with its box clipped to the image and ``iscrowd`` and ``area`` filled in; None (and the id
    in ``report.skipped_degenerate``) for a box with no area left."""
    x, y, w, h = (float(v) for v in ann["bbox"])
    if w <= 0 or h <= 0:
        report.skipped_degenerate.append(ann["id"])
        return None
    x0, y0 = min(max(x, 0.0), img["width"]), min(max(y, 0.0), img["height"])
    x1, y1 = min(max(x + w, 0.0), img["width"]), min(max(y + h, 0.0), img["height"])
    if (x0, y0, x1, y1) != (x, y, x + w, y + h):
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            report.skipped_degenerate.append(ann["id"])
            return None
        report.clipped.append(ann["id"])
    clean = dict(ann)
    clean["bbox"] = [x0, y0, x1 - x0, y1 - y0]
    clean["iscrowd"] = int(crowd)
    clean.setdefault("area", (x1 - x0) * (y1 - y0))
    return clean


def _unknown_categories_message(unknown_categories: dict[int, int], categories: dict[int, dict]) -> str:
    known = sorted(categories)
    listed = ", ".join(f"{cid!r} ({n} annotations)" for cid, n in list(unknown_categories.items())[:MAX_LISTED])
    return (
        f"annotations use category ids not listed in 'categories': {listed}; "
        f"known ids are {known[:20]}{' …' if len(known) > 20 else ''}"
    )


def load_coco_file(path: str | os.PathLike, fix: bool = True) -> tuple[dict, ValidationReport]:
    """Read and validate a COCO annotation JSON file."""
    return validate_coco(read_json(path), source=str(path), fix=fix)
