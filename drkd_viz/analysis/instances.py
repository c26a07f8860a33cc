"""Instance relations (the paper's Fig. 2, done better): the N x N relation matrices A of the ground-truth instances
of one image for the teacher and the students, in one order shared by the matrices and the numbered boxes, and how
close each student's rows come to the teacher's over the test split, by object size.

    rel = relation_matrices(models, image, boxes, "P2", areas=instance_areas(dataset, i))
    rel["drkd"].matrix          # N x N, row k: how instance k attends to the others (rows sum to 1)
    rel["drkd"].order           # indices into ``boxes``: instance k of the matrix is boxes[order[k]]
    relation_matrices(models, image, boxes, "P2", labels=labels, relation="anchored")   # by class, then size
    image_relation_metrics(rel)  # per model: same-class AUC of this image, row L1 to the teacher by size
    relation_summary(models, dataset, "P2")   # one row per (image, instance, student): L1 and KL to the teacher

Instances are ordered by area, largest first (the paper indexes them by box area); given their ``labels``, by class
first, so that a relation that carries class structure shows it as blocks on the diagonal. With the annotations'
areas (``instance_areas``) the order and the small / medium / large buckets are those of COCO's AP_S/M/L; without
them, the box area is used. The boxes are sorted *before* the relation module sees them, so the matrix is computed
in the displayed order (the ``reference`` filter draws its random columns in that order too).

Two relations can be shown: ``learned`` (the DRKD run's relation modules, the paper's A, when its L_IR was on) and
``anchored`` (softmax over the other instances of cos / 0.1 of the model's own pooled features: the target L_IRA
distils, with no parameters to train).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torchvision.models.detection.transform import resize_boxes

from drkd_viz.analysis.models import ModelSet, image_and_boxes, instance_areas
from drkd_viz.data.coco import CocoDetection
from drkd_viz.data.statistics import size_bucket
from drkd_viz.distill.instance_relation import boxes_to_rois, level_stride, pool_instances
from drkd_viz.distill.relation_metrics import same_class_auc
from drkd_viz.distill.relations import instance_relation
from drkd_viz.errors import UserError

KL_EPS = 1e-12  # softmax entries that underflow to 0 would make KL infinite


@dataclass
class InstanceRelations:
    role: str
    level: str
    order: np.ndarray  # int, indices into the boxes given, largest area first
    boxes: np.ndarray  # N x 4 (x1, y1, x2, y2, image coordinates) in that order
    areas: np.ndarray  # N, in that order
    sizes: list[str]  # "small" / "medium" / "large" of each, in that order
    matrix: np.ndarray  # A: N x N, rows sum to 1
    filter: np.ndarray | None  # w: N x N relation-filter weights (None: the module has no filter)
    # "learned": the DRKD run's relation modules; "parameter-free": softmax over the other instances of cos / 0.1
    # (asked for as ``anchored``, or the fallback of a DRKD run without L_IR, which has no relation module)
    source: str = "learned"
    labels: np.ndarray | None = None  # class ids in that order (None: not given)


def box_areas(boxes: np.ndarray | torch.Tensor) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)


def area_order(areas: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Indices that sort ``areas`` largest first (ties keep the given order); given ``labels``, by class first."""
    by_area = np.argsort(-np.asarray(areas, dtype=np.float64), kind="stable")
    if labels is None:
        return by_area
    return by_area[np.argsort(np.asarray(labels)[by_area], kind="stable")]


def relation_matrices(
    models: ModelSet,
    image: torch.Tensor,
    boxes: np.ndarray | torch.Tensor,
    level: str,
    areas: np.ndarray | None = None,
    roles: Sequence[str] | None = None,
    labels: np.ndarray | torch.Tensor | None = None,
    relation: Literal["learned", "anchored"] = "learned",
) -> dict[str, InstanceRelations]:
    """Relation matrix and filter of the ground-truth ``boxes`` (N x 4, image coordinates) at ``level`` for each
    role (default: teacher, baseline, DRKD student), instances ordered by area (given their ``labels``, by class,
    then area). ``areas``: the annotations' areas (default: the boxes' areas). ``relation``: ``learned`` (the
    DRKD run's relation modules; the parameter-free relation where it has none) or ``anchored`` (the
    parameter-free relation always). One forward per model."""
    if relation not in ("learned", "anchored"):
        raise UserError(f"unknown relation {relation!r}; choose 'learned' or 'anchored'")
    models.check_level(level, "instance")
    boxes_np = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    areas = box_areas(boxes_np) if areas is None else np.asarray(areas, dtype=np.float64)
    if len(areas) != len(boxes_np):
        raise UserError(f"{len(areas)} areas given for {len(boxes_np)} boxes")
    labels_np = None if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels_np is not None and len(labels_np) != len(boxes_np):
        raise UserError(f"{len(labels_np)} labels given for {len(boxes_np)} boxes")
    order = area_order(areas, labels_np)
    sorted_boxes, sorted_areas = boxes_np[order], areas[order]
    sorted_labels = None if labels_np is None else labels_np[order]
    sizes = [size_bucket(a) for a in sorted_areas]
    out = {}
    for role in models.select(roles):
        matrix, filt, source = np.zeros((0, 0)), None, "learned"
        if len(order):
            feats = models.features(role, image)
            units = models.units[role]
            # pooled where the detector sees the boxes: in its resized coordinates (spec §1)
            moved = resize_boxes(torch.as_tensor(sorted_boxes, dtype=torch.float32), feats.image_size, feats.input_size)
            rois, index = boxes_to_rois([moved])
            with torch.no_grad():
                r = pool_instances(feats.features[level], rois, level_stride(level), units.roi_size)
                if relation == "learned" and level in units.relations:
                    # seeded like inspect_image: the ``reference`` filter's random draw is the same on every call
                    rel = units.relations[level](r, index, torch.Generator().manual_seed(0))
                    matrix = rel.matrix.double().numpy()
                    filt = rel.filter.double().numpy() if rel.filter is not None else None
                else:
                    source = "parameter-free"
                    matrix = instance_relation(r, index).double().numpy() if len(order) > 1 else np.ones((1, 1))
        out[role] = InstanceRelations(
            role, level, order, sorted_boxes, sorted_areas, sizes, matrix, filt, source, sorted_labels
        )
    return out


def image_relation_metrics(relations: dict[str, InstanceRelations]) -> pd.DataFrame:
    """What one image's matrices carry, per model: the same-class AUC of its instance pairs (needs the labels and
    both kinds of pair; else NaN), the rows' mean entropy over its maximum log(N − 1) (1: uniform rows that relate
    every instance alike; NaN under 3 instances) and, for a student beside the teacher, the mean row L1 to the
    teacher's rows by object size (``l1 all`` over every instance). One row per model: ``role``, ``auc``,
    ``entropy``, ``l1 <size>``."""
    rows = []
    teacher = relations.get("teacher")
    for role, rel in relations.items():
        row: dict[str, object] = {"role": role, "auc": float("nan"), "entropy": float("nan")}
        n = len(rel.order)
        if n > 2:
            off = rel.matrix[~np.eye(n, dtype=bool)].reshape(n, n - 1).clip(KL_EPS, None)
            row["entropy"] = float((-(off * np.log(off)).sum(1) / np.log(n - 1)).mean())
        if rel.labels is not None and n > 1:
            value = same_class_auc(
                torch.as_tensor(rel.matrix), torch.zeros(n, dtype=torch.long), torch.as_tensor(rel.labels)
            )
            row["auc"] = float("nan") if value is None else value
        if teacher is not None and role != "teacher" and n > 1:
            l1, _ = row_distances(rel.matrix, teacher.matrix)
            sizes = np.array(rel.sizes)
            for size in ("small", "medium", "large"):
                row[f"l1 {size}"] = float(l1[sizes == size].mean()) if (sizes == size).any() else float("nan")
            row["l1 all"] = float(l1.mean())
        rows.append(row)
    columns = ["role", "auc", "entropy", "l1 small", "l1 medium", "l1 large", "l1 all"]
    return pd.DataFrame(rows).reindex(columns=columns)


def row_distances(student: np.ndarray, teacher: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of two N x N relation matrices: L1 distance (0…2) and KL(teacher ‖ student) in nats."""
    t, s = np.clip(teacher, KL_EPS, None), np.clip(student, KL_EPS, None)
    return np.abs(student - teacher).sum(1), (t * np.log(t / s)).sum(1)


def relation_summary(
    models: ModelSet,
    dataset: CocoDetection,
    level: str,
    max_images: int = 50,
    roles: Sequence[str] | None = None,
) -> pd.DataFrame:
    """How close each student's relation rows come to the teacher's, over the first ``max_images`` images of
    ``dataset`` with at least two instances (with one, every row is [1]). One row per (image, instance, student):
    ``image_id``, ``index``, ``ann_id``, ``instance`` (position in the area order), ``n_instances``, ``level``,
    ``area``, ``size``, ``role``, ``l1`` and ``kl`` (KL(teacher ‖ student) in nats)."""
    students = [r for r in models.select(roles) if r != "teacher"]
    rows, used = [], 0
    for index in range(len(dataset)):
        if used >= max_images:
            break
        image, boxes, _ = image_and_boxes(dataset, index)
        if len(boxes) < 2:
            continue
        used += 1
        rel = relation_matrices(models, image, boxes, level, instance_areas(dataset, index), ["teacher", *students])
        image_id = dataset.ids[index]
        ann_ids = [a["id"] for a in dataset.coco.imgToAnns[image_id] if not a.get("iscrowd", 0)]
        teacher = rel["teacher"]
        for role in students:
            l1, kl = row_distances(rel[role].matrix, teacher.matrix)
            for k, original in enumerate(teacher.order):
                rows.append(
                    {
                        "image_id": image_id,
                        "index": index,
                        "ann_id": ann_ids[original],
                        "instance": k,
                        "n_instances": len(boxes),
                        "level": level,
                        "area": float(teacher.areas[k]),
                        "size": teacher.sizes[k],
                        "role": role,
                        "l1": float(l1[k]),
                        "kl": float(kl[k]),
                    }
                )
    columns = ["image_id", "index", "ann_id", "instance", "n_instances", "level", "area", "size", "role", "l1", "kl"]
    return pd.DataFrame(rows, columns=columns)
