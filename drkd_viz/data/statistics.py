"""Statistics of a COCO-format dataset: COCO's object-size buckets (the one place its thresholds live), counts per
split, class and size, the histogram of object sizes, and same-class overlaps (label noise in a dataset drawn one
style per class)."""

from __future__ import annotations

import math

import numpy as np

SMALL_AREA, MEDIUM_AREA = 32**2, 96**2  # COCO's thresholds on the annotation's area


def size_bucket(area: float) -> str:
    return "small" if area < SMALL_AREA else "medium" if area < MEDIUM_AREA else "large"


def dataset_statistics(coco_by_split: dict[str, dict]) -> dict:
    """Counts per split: images, instances, per class, per COCO size bucket, objects per image."""
    stats: dict = {"classes": None, "splits": {}}
    for split, coco in coco_by_split.items():
        names = {c["id"]: c["name"] for c in coco["categories"]}
        stats["classes"] = [c["name"] for c in coco["categories"]]
        anns = [a for a in coco["annotations"] if not a.get("iscrowd", 0)]
        per_image = np.bincount(
            [a["image_id"] for a in anns], minlength=max([i["id"] for i in coco["images"]] + [0]) + 1
        )
        per_image = per_image[[i["id"] for i in coco["images"]]]
        sizes = {"small": 0, "medium": 0, "large": 0}
        for a in anns:
            sizes[size_bucket(a["area"])] += 1
        n = max(len(anns), 1)
        stats["splits"][split] = {
            "images": len(coco["images"]),
            "instances": len(anns),
            "per_class": {names[k]: sum(a["category_id"] == k for a in anns) for k in names},
            "sizes": sizes,
            "size_fractions": {k: round(v / n, 4) for k, v in sizes.items()},
            "objects_per_image": {
                "min": int(per_image.min()) if len(per_image) else 0,
                "mean": round(float(per_image.mean()), 2) if len(per_image) else 0.0,
                "max": int(per_image.max()) if len(per_image) else 0,
            },
            "sqrt_area_histogram": _sqrt_area_histogram(anns),
        }
    return stats


HIST_EDGES = (0, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def _sqrt_area_histogram(anns: list[dict]) -> dict:
    counts, _ = np.histogram([math.sqrt(a["area"]) for a in anns], bins=HIST_EDGES)
    return {"edges": list(HIST_EDGES), "counts": counts.tolist()}


def same_class_overlaps(coco: dict, iou: float = 0.3, inside: float = 0.8) -> dict:
    """Instances that overlap another of their class in their image (IoU above ``iou``, or more than
    ``inside`` of the smaller box within the other): drawn in one style, such an instance has no visible
    boundary, so its box is label noise. Returns counts and the fraction of instances affected."""
    boxes_by_key: dict[tuple[int, int], list[list[float]]] = {}
    for ann in coco["annotations"]:
        boxes_by_key.setdefault((ann["image_id"], ann["category_id"]), []).append(ann["bbox"])
    affected, images = 0, set()
    for (image_id, _), boxes in boxes_by_key.items():
        for a, box in enumerate(boxes):
            if any(_overlap_too_much(box, other, iou, inside) for b, other in enumerate(boxes) if b != a):
                affected += 1
                images.add(image_id)
    total = max(len(coco["annotations"]), 1)
    return {"instances": affected, "fraction": round(affected / total, 4), "images": len(images)}


def _overlap_too_much(a: list[float], b: list[float], iou: float, inside: float) -> bool:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a, area_b = a[2] * a[3], b[2] * b[3]
    union = area_a + area_b - inter
    return inter / max(union, 1e-9) > iou or inter / max(min(area_a, area_b), 1e-9) > inside
