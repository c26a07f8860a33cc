"""What each model's instance relations carry, over a split: the relation metrics of the report, the Runs page and the
notebooks (``drkd_viz.distill.relation_metrics`` holds the measures themselves).

For every image with at least 3 ground-truth instances, every model's FPN feature is pooled over the instances
(RoIAlign 3x3, in the detector's resized coordinates) and related by the same parameter-free relation, nothing
learned (``relations.instance_relation``: softmax over the other instances of cos / τ). Then:

* **class structure** — the AUC of "same class" over every ordered within-image pair of instances, pooled over the
  images (the teacher's is the target an anchored relation distils; a student's says how much class structure its
  own features hold);
* **agreement** — each student's rows against the teacher's rows: L1 (0…2) and Spearman's ρ, by the size of the
  row's instance (COCO's small / medium / large, from the annotations' areas).

    metrics = relation_metrics({"teacher": t, "baseline": b, "drkd": d}, dataset, levels=["P2", "P3"])
    metrics.auc          # role, level, auc, pairs, same_class_pairs
    metrics.agreement    # role, level, size, row_l1, spearman, rows
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torchvision.models.detection.transform import resize_boxes

from drkd_viz.data.coco import CocoDetection
from drkd_viz.data.statistics import size_bucket
from drkd_viz.distill.instance_relation import boxes_to_rois, level_stride, pool_instances
from drkd_viz.distill.relation_metrics import auc, row_agreement, same_class_pair_scores
from drkd_viz.distill.relations import instance_relation
from drkd_viz.errors import UserError
from drkd_viz.models.capture import fpn_features, transform_inputs

MIN_INSTANCES = 3  # a row needs two other instances to rank


@dataclass
class RelationMetrics:
    auc: pd.DataFrame  # role, level, auc, pairs, same_class_pairs
    agreement: pd.DataFrame  # role, level, size, row_l1, spearman, rows (students only; "all" sums the sizes)
    images: int  # images measured


@torch.no_grad()
def instance_vectors(model: nn.Module, image: torch.Tensor, boxes: torch.Tensor, levels: Sequence[str], roi_size: int):
    """Level -> N x C·s² RoIAlign vectors of ``boxes`` (image coordinates) in ``model``'s FPN features."""
    model.eval()
    images, _ = transform_inputs(model, [image])
    feats = fpn_features(model, images.tensors)
    moved = resize_boxes(boxes.float(), tuple(image.shape[-2:]), tuple(images.image_sizes[0]))
    rois, _ = boxes_to_rois([moved])
    missing = [lv for lv in levels if lv not in feats]
    if missing:
        raise UserError(f"levels {missing} are not FPN levels of this detector; it has {list(feats)}")
    return {lv: pool_instances(feats[lv], rois, level_stride(lv), roi_size) for lv in levels}


def relation_metrics(
    models: Mapping[str, nn.Module],
    dataset: CocoDetection,
    levels: Sequence[str] = ("P2", "P3"),
    max_images: int = 80,
    temperature: float = 0.1,
    roi_size: int = 3,
    progress: bool = False,
) -> RelationMetrics:
    """The relation metrics of every model (``"teacher"`` among them for the agreement) on the first ``max_images``
    images of ``dataset`` with at least 3 instances."""
    from tqdm.auto import tqdm

    scores: dict[tuple[str, str], list[torch.Tensor]] = {}
    same: dict[tuple[str, str], list[torch.Tensor]] = {}
    rows: list[dict] = []
    used = 0
    bar = tqdm(total=max_images, desc="relation metrics", unit="img", disable=not progress)
    for index in range(len(dataset)):
        if used >= max_images:
            break
        image, target = dataset[index]
        boxes, labels = target["boxes"], target["labels"]
        if len(boxes) < MIN_INSTANCES:
            continue
        used += 1
        bar.update()
        anns = [a for a in dataset.coco.imgToAnns[dataset.ids[index]] if not a.get("iscrowd", 0)]
        sizes = [size_bucket(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in anns]
        image_index = torch.zeros(len(boxes), dtype=torch.int64)
        relations = {}
        for role, model in models.items():
            vectors = instance_vectors(model, image, boxes, levels, roi_size)
            for lv in levels:
                matrix = instance_relation(vectors[lv], image_index, temperature)
                relations[role, lv] = matrix
                s, k = same_class_pair_scores(matrix, image_index, labels)
                scores.setdefault((role, lv), []).append(s)
                same.setdefault((role, lv), []).append(k)
        if "teacher" not in models:
            continue
        for role in models:
            if role == "teacher":
                continue
            for lv in levels:
                l1, rho = row_agreement(relations[role, lv], relations["teacher", lv], image_index)
                for i in range(len(boxes)):
                    rows.append({"role": role, "level": lv, "size": sizes[i], "l1": float(l1[i]), "rho": rho[i]})
    bar.close()
    auc_rows = []
    for (role, lv), parts in scores.items():
        flags = torch.cat(same[role, lv])
        auc_rows.append(
            {
                "role": role,
                "level": lv,
                "auc": auc(torch.cat(parts), flags),
                "pairs": len(flags),
                "same_class_pairs": int(flags.sum()),
            }
        )
    return RelationMetrics(pd.DataFrame(auc_rows), agreement_table(pd.DataFrame(rows)), used)


def agreement_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (role, level, size) and over all sizes ("all"): mean row L1, mean Spearman ρ and the number of rows, in
    the order the roles and levels came, sizes small → large."""
    columns = ["role", "level", "size", "row_l1", "spearman", "rows"]
    out = []
    for role in dict.fromkeys(rows.get("role", [])):
        for lv in dict.fromkeys(rows.loc[rows["role"] == role, "level"]):
            group = rows[(rows["role"] == role) & (rows["level"] == lv)]
            for size in ("small", "medium", "large", "all"):
                part = group if size == "all" else group[group["size"] == size]
                if part.empty:
                    continue
                rho = part["rho"].dropna()
                out.append(
                    {
                        "role": role,
                        "level": lv,
                        "size": size,
                        "row_l1": float(part["l1"].mean()),
                        "spearman": float(rho.mean()) if len(rho) else np.nan,
                        "rows": len(part),
                    }
                )
    return pd.DataFrame(out, columns=columns)
