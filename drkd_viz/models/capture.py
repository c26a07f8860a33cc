"""What distillation needs from a detector's forward pass, taken with forward hooks on torchvision's
own modules (no copied or forked torchvision code):

* the FPN feature maps, keyed by level name (``P2`` … ``P7``, P<k> having stride 2**k);
* the images as the detector saw them (resized, normalised, padded: an ``ImageList``);
* the targets in those *transformed* coordinates, where boxes must be pooled.

    with record_forward(student) as rec:
        losses = student(images, targets)          # the ordinary torchvision forward
    rec.features["P2"], rec.targets[0]["boxes"]    # live tensors: gradients flow through them

The teacher then only needs its backbone on exactly the student's input:
``teacher_feats = fpn_features(teacher, rec.images.tensors)``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList


def name_levels(features: OrderedDict[str, torch.Tensor], input_height: int) -> OrderedDict[str, torch.Tensor]:
    """Rename torchvision's FPN keys ('0', '1', …, 'pool' / 'p6', 'p7') to P<k> by stride.

    The first level's stride is exact (inputs are padded to a multiple of 32); each further level
    halves the resolution, so it is named by counting, which stays right for tiny inputs where
    ceil-rounded sizes would make strides ambiguous.
    """
    first = next(iter(features.values()))
    k0 = round(math.log2(input_height / first.shape[-2]))
    return OrderedDict((f"P{k0 + i}", v) for i, v in enumerate(features.values()))


@dataclass
class ForwardRecord:
    images: ImageList | None = None
    targets: list[dict[str, torch.Tensor]] | None = None
    features: OrderedDict[str, torch.Tensor] = field(default_factory=OrderedDict)


@contextmanager
def record_forward(model: nn.Module) -> Iterator[ForwardRecord]:
    """Record the transformed images/targets and named FPN features of every forward inside the block
    (the last one wins). Works for torchvision's FasterRCNN and RetinaNet, in train and eval mode."""
    record = ForwardRecord()

    def on_transform(_module, _inputs, output):
        record.images, record.targets = output

    def on_backbone(_module, inputs, output):
        record.features = name_levels(output, inputs[0].shape[-2])

    hooks = [
        model.transform.register_forward_hook(on_transform),
        model.backbone.register_forward_hook(on_backbone),
    ]
    try:
        yield record
    finally:
        for hook in hooks:
            hook.remove()


def fpn_features(model: nn.Module, batch: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
    """The named FPN features of ``model`` for an already transformed, padded batch (B, 3, H, W)."""
    return name_levels(model.backbone(batch), batch.shape[-2])


def transform_inputs(
    model: nn.Module, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
) -> tuple[ImageList, list[dict[str, torch.Tensor]] | None]:
    """Resize/normalise/pad images (and move target boxes) exactly as ``model`` does, without the heads.
    (torchvision's transform copies the target dicts; the caller's are left untouched.)"""
    return model.transform(images, targets)
