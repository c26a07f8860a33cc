"""Inspection API: what the relation units see, for one image and one detector.

    units = load_relation_units("runs/demo/drkd", side="student")   # drkd_viz.analysis.models: a run's trained units
    view = inspect_image(student, image, gt_boxes, units)
    view.levels["P2"].relation          # G(x) of the FPN feature
    view.levels["P2"].projection        # P: how strongly each pixel votes into each graph node
    view.instances["P2"].matrix         # A: the relation matrix of the ground-truth instances

Which units go with which model, so comparisons are meaningful:

* the **teacher** is inspected with the DRKD run's teacher-side units (G_t, R_t);
* the **DRKD student** with its own student-side units (G_s, R_s);
* the **baseline student** was trained without relation units. It is inspected with the DRKD
  student's units (same architecture, same channel count): the same lens applied to its features,
  so a difference between the two students' maps comes from their features, not from the units.
  (``side="student"`` on the DRKD run; the Inspection records which units were applied.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torchvision.models.detection.transform import resize_boxes

from drkd_viz.distill.config import DistillConfig, active_terms
from drkd_viz.distill.glore import GraphReasoningUnit
from drkd_viz.distill.instance_relation import RelationModule, boxes_to_rois, level_stride, pool_instances
from drkd_viz.errors import UserError
from drkd_viz.models.capture import record_forward


@dataclass
class LevelView:
    level: str
    feature: torch.Tensor  # FPN feature, C x h x w (cropped to the image, padding removed)
    relation: torch.Tensor | None = None  # G(x), C x h x w
    projection: torch.Tensor | None = None  # P, M x h x w
    nodes: torch.Tensor | None = None  # V, S x M
    node_mixing: torch.Tensor | None = None  # A_g, M x M


@dataclass
class InstanceView:
    level: str
    boxes: torch.Tensor  # N x 4, original image coordinates (x1, y1, x2, y2)
    boxes_transformed: torch.Tensor  # N x 4, where they were pooled
    features: torch.Tensor  # r, N x C·s²
    matrix: torch.Tensor | None = None  # A, N x N (rows sum to 1)
    filter: torch.Tensor | None = None  # w, N x N
    aggregated: torch.Tensor | None = None  # z, N x C·s²


@dataclass
class Inspection:
    image_size: tuple[int, int]  # original (h, w)
    input_size: tuple[int, int]  # after the detector's resize (h, w)
    units: str  # which relation units were applied
    detections: dict[str, torch.Tensor]
    levels: dict[str, LevelView] = field(default_factory=dict)
    instances: dict[str, InstanceView] = field(default_factory=dict)


class RelationUnits(nn.Module):
    """One side (student or teacher) of a DRKD run's trained relation modules."""

    def __init__(
        self,
        pixel: dict[str, GraphReasoningUnit],
        relations: dict[str, RelationModule],
        roi_size: int,
        description: str,
    ):
        super().__init__()
        self.pixel, self.relations = nn.ModuleDict(pixel), nn.ModuleDict(relations)
        self.roi_size, self.description = roi_size, description

    @classmethod
    def from_state(
        cls, state: dict[str, torch.Tensor], settings: DistillConfig, side: str = "student", name: str = "a run"
    ) -> RelationUnits:
        """The ``side`` units of a DRKD run from its trained weights (``state``: the checkpoint's, distiller keys)
        and its resolved ``distill`` settings (which terms, so which units, were trained). Reading the run folder
        is the analysis layer's (:func:`drkd_viz.analysis.models.load_relation_units`)."""
        if side not in ("student", "teacher"):
            raise UserError(f"side must be 'student' or 'teacher', got {side!r}")
        pixel_prefix, rel_prefix = f"pixel.{side}_units.", f"instance.{side}_relations."
        pixel, relations = {}, {}
        keys = {term.key for term in active_terms(settings)}  # units exist only for the terms that were trained
        for lv in settings.pr_levels if "loss_pr" in keys else []:
            weight = state[f"{pixel_prefix}{lv}.state.weight"]  # S x C x 1 x 1
            nodes = state[f"{pixel_prefix}{lv}.proj.weight"].shape[0]
            unit = GraphReasoningUnit(weight.shape[1], nodes, weight.shape[0], settings.glore_normalize)
            unit.load_state_dict(
                {k[len(f"{pixel_prefix}{lv}.") :]: v for k, v in state.items() if k.startswith(f"{pixel_prefix}{lv}.")}
            )
            pixel[lv] = unit
        for lv in settings.ir_levels if "loss_ir" in keys else []:
            dim = state[f"{rel_prefix}{lv}.theta.weight"].shape[1]
            module = RelationModule(
                dim,
                settings.relation_filter,
                settings.relation_scale,
                aggregate=settings.ir_target == "features",
            )
            module.load_state_dict(
                {k[len(f"{rel_prefix}{lv}.") :]: v for k, v in state.items() if k.startswith(f"{rel_prefix}{lv}.")}
            )
            relations[lv] = module
        return cls(pixel, relations, settings.roi_size, f"{side} units of {name}").eval()


@torch.no_grad()
def inspect_image(
    model: nn.Module,
    image: torch.Tensor,
    boxes: torch.Tensor | None = None,
    units: RelationUnits | None = None,
    levels: list[str] | None = None,
) -> Inspection:
    """One forward pass of ``model`` on ``image`` (3 x H x W in [0, 1]) and, with ``units``, the relation
    features, projections and instance relations of ``boxes`` (N x 4, original coordinates)."""
    model.eval()
    with record_forward(model) as rec:
        detections = model([image])[0]
    h, w = rec.images.image_sizes[0]
    orig = (int(image.shape[-2]), int(image.shape[-1]))
    view = Inspection(
        image_size=orig,
        input_size=(h, w),
        units=units.description if units else "none",
        detections={k: v.detach() for k, v in detections.items()},
    )
    for lv, feature in rec.features.items():
        if levels is not None and lv not in levels:
            continue
        stride = level_stride(lv)
        crop = (slice(None), slice(0, -(-h // stride)), slice(0, -(-w // stride)))
        level = LevelView(lv, feature[0][crop])
        if units is not None and lv in units.pixel:
            parts = units.pixel[lv].parts(feature[:1])
            level.relation, level.projection = parts.relation[0][crop], parts.projection[0][crop]
            level.nodes, level.node_mixing = parts.nodes[0], parts.node_mixing
        view.levels[lv] = level
    if boxes is not None and units is not None and len(units.relations):
        moved = resize_boxes(boxes.to(image.dtype), orig, (h, w))
        rois, index = boxes_to_rois([moved])
        for lv, module in units.relations.items():
            r = pool_instances(rec.features[lv][:1], rois, level_stride(lv), units.roi_size)
            out = module(r, index, torch.Generator().manual_seed(0))
            view.instances[lv] = InstanceView(lv, boxes, moved, r, out.matrix, out.filter, out.aggregated)
    return view
