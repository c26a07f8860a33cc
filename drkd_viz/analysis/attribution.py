"""Which pixels make a detector call *this box* *this class*: Captum attributions of a differentiable box score.

The score is defined on the image as given (3 x H x W, values in [0, 1], original resolution): the
detector's own ``model.transform`` (normalisation, bilinear resize, zero padding: all differentiable torch
ops) runs inside it, so attributions land on the original pixels.

* Faster R-CNN — the box is moved to the resized input's coordinates, pooled with the detector's
  ``roi_heads.box_roi_pool`` (multi-scale RoIAlign) from the FPN features, passed through ``box_head`` and
  ``box_predictor``; the score is the softmax probability of ``label`` for that fixed box (the RPN and the
  box regression play no part: the question is "is this box this class?").
* RetinaNet — there is no per-box head, so the score is the mean sigmoid probability of ``label`` over the
  anchors the box would be assigned in training: those with IoU ≥ the detector's foreground threshold
  (0.5 by default) plus the best-overlapping anchor(s) (torchvision's low-quality matches), so a box too small
  for any anchor still has a score.

Methods (all return an H x W map on the original image):

* ``integrated_gradients`` — path integral of the gradient from a black image (zeros) to the image, summed
  over colour channels (signed). Completeness: the map sums to score(image) − score(black), up to the
  quadrature error of ``steps`` points (Gauss–Legendre); :func:`ig_completeness` measures it.
* ``saliency`` — |∂score/∂pixel|, maximum over the colour channels (non-negative).
* ``gradcam`` — Grad-CAM on the output of one FPN level (``P2`` … ; the module is found by matching the
  backbone's outputs to :func:`drkd_viz.models.capture.name_levels`), ReLU'd, upsampled bilinearly to the
  padded input, cropped to the resized image and resized to the original size (non-negative).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import box_iou

from drkd_viz.errors import UserError
from drkd_viz.models.capture import name_levels

METHODS: tuple[str, ...] = ("integrated_gradients", "saliency", "gradcam")
METHOD_TITLES: dict[str, str] = {
    "integrated_gradients": "Integrated Gradients",
    "saliency": "saliency |∂score/∂pixel|",
    "gradcam": "Grad-CAM",
}


def _family(model: nn.Module) -> str:
    if isinstance(model, FasterRCNN):
        return "faster_rcnn"
    if isinstance(model, RetinaNet):
        return "retinanet"
    raise UserError(f"attribution supports torchvision FasterRCNN and RetinaNet detectors, got {type(model).__name__}")


def _num_classes(model: nn.Module) -> int:
    if _family(model) == "faster_rcnn":
        return model.roi_heads.box_predictor.cls_score.out_features
    return model.head.classification_head.num_classes


def _check(model: nn.Module, box: torch.Tensor, label: int, image: torch.Tensor | None = None) -> torch.Tensor:
    """The box as a float tensor (4,), after checks that turn deep torch errors into clear messages."""
    if model.training:
        raise UserError("the detector is in training mode; call model.eval() before attributing")
    box = torch.as_tensor(box, dtype=torch.float32).reshape(-1)
    if box.numel() != 4 or not bool(torch.isfinite(box).all()) or box[2] <= box[0] or box[3] <= box[1]:
        raise UserError(f"box must be 4 finite numbers x1, y1, x2, y2 with x2 > x1 and y2 > y1, got {box.tolist()}")
    classes = _num_classes(model)
    if not 1 <= int(label) < classes:
        raise UserError(f"label must be a foreground class label in 1..{classes - 1} (0 is background), got {label}")
    if image is not None:
        if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise UserError(f"image must be a float tensor 3 x H x W with values in [0, 1], got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        if box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
            raise UserError(f"box {box.tolist()} lies outside the {w} x {h} image (original pixel coordinates)")
    return box


def box_score_function(model: nn.Module, box: torch.Tensor, label: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A differentiable score of class ``label`` (the detector's contiguous label, 1..K) in the fixed ``box``
    (x1, y1, x2, y2 in original image pixels): a function of a batch B x 3 x H x W of images in [0, 1]
    returning B scores in [0, 1]. See the module docstring for what it computes per detector family."""
    box = _check(model, box, label)
    family = _family(model)

    def score(images: torch.Tensor) -> torch.Tensor:
        batch = images.shape[0]
        inputs, _ = model.transform(list(images))  # normalise, resize, pad: differentiable
        box_in = resize_boxes(box[None].to(images.device), tuple(images.shape[-2:]), inputs.image_sizes[0])
        features = model.backbone(inputs.tensors)
        if family == "faster_rcnn":
            heads = model.roi_heads
            pooled = heads.box_roi_pool(features, [box_in] * batch, inputs.image_sizes)
            logits, _ = heads.box_predictor(heads.box_head(pooled))
            return logits.softmax(-1)[:, label]
        levels = list(features.values())
        logits = model.head.classification_head(levels)  # B x anchors x classes
        with torch.no_grad():
            anchors = model.anchor_generator(inputs, levels)[0]
            iou = box_iou(box_in, anchors)[0]
            chosen = (iou >= model.proposal_matcher.high_threshold) | (iou == iou.max())
        return logits[:, chosen, label].sigmoid().mean(1)

    return score


def box_score(model: nn.Module, image: torch.Tensor, box: torch.Tensor, label: int) -> float:
    """The score of :func:`box_score_function` for one image (no gradients)."""
    box = _check(model, box, label, image)
    with torch.no_grad():
        return float(box_score_function(model, box, label)(image[None])[0])


def level_module(model: nn.Module, level: str) -> nn.Module:
    """The module whose output is FPN level ``level`` (``P2`` …), found by running the backbone once and
    matching each candidate module's output to the level :func:`name_levels` gives that tensor."""
    _family(model)
    fpn = model.backbone.fpn
    candidates = list(fpn.layer_blocks) + (list(fpn.extra_blocks.children()) if fpn.extra_blocks else [])
    outputs: dict[int, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, k=k: outputs.__setitem__(k, out)) for k, m in enumerate(candidates)
    ]
    try:
        with torch.no_grad():
            probe = torch.zeros(1, 3, 256, 256, device=next(model.parameters()).device)
            named = name_levels(model.backbone(probe), probe.shape[-2])
    finally:
        for hook in hooks:
            hook.remove()
    if level not in named:
        raise UserError(f"this detector has FPN levels {list(named)}, not {level!r}")
    for k, out in outputs.items():
        if out is named[level]:
            return candidates[k]
    with_module = [name for name, t in named.items() if any(t is o for o in outputs.values())]
    raise UserError(
        f"level {level} of this detector is computed without a layer of its own (a max-pool of the level "
        f"below), so Grad-CAM has nothing to hook; choose one of {with_module}"
    )


def box_level(model: nn.Module, image: torch.Tensor, box: torch.Tensor) -> str:
    """The FPN level the detector reads ``box`` from: for Faster R-CNN the level RoIAlign pools it from
    (the FPN paper's scale rule, torchvision's ``LevelMapper``); for RetinaNet the level of the anchor that
    overlaps the box most. Grad-CAM on another level of Faster R-CNN is zero: FPN outputs do not feed each other."""
    box = torch.as_tensor(box, dtype=torch.float32).reshape(1, 4)
    family = _family(model)
    with torch.no_grad():
        inputs, _ = model.transform([image.float()])
        box_in = resize_boxes(box, tuple(image.shape[-2:]), inputs.image_sizes[0])
        features = model.backbone(inputs.tensors)
        names = list(name_levels(features, inputs.tensors.shape[-2]))
        if family == "faster_rcnn":
            pooler = model.roi_heads.box_roi_pool
            pooler(features, [box_in], inputs.image_sizes)  # sets the pooler's level mapper, as inference does
            first = names.index(f"P{round(-np.log2(pooler.scales[0]))}")
            return names[first + int(pooler.map_levels([box_in])[0])]
        levels = list(features.values())
        anchors = model.anchor_generator(inputs, levels)[0]
        best = int(box_iou(box_in, anchors)[0].argmax())
        per_location = model.anchor_generator.num_anchors_per_location()[0]
        ends = np.cumsum([f.shape[-2] * f.shape[-1] * per_location for f in levels])  # anchors are level-major
        return names[int(np.searchsorted(ends, best, side="right"))]


def _baseline(image: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(image)  # a black image: "no evidence" for the shapes on a textured background


def _integrated_gradients(model, image, box, label, steps: int, internal_batch_size: int) -> torch.Tensor:
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(box_score_function(model, box, label))
    x = image[None]
    return ig.attribute(x, baselines=_baseline(x), n_steps=steps, internal_batch_size=internal_batch_size)[0]


def attribute(
    model: nn.Module,
    image: torch.Tensor,
    box: torch.Tensor,
    label: int,
    method: str,
    level: str = "auto",
    steps: int = 32,
    internal_batch_size: int = 8,
) -> np.ndarray:
    """An H x W attribution map of the box score (see the module docstring) on the original image.

    ``method``: ``"integrated_gradients"`` (signed, ``steps`` points), ``"saliency"`` (≥ 0) or ``"gradcam"``
    (≥ 0, on FPN ``level``; ``"auto"``: :func:`box_level`, the level the detector reads the box from).
    ``internal_batch_size`` bounds the memory Integrated Gradients uses.
    """
    from captum.attr import LayerGradCam, Saliency

    if method not in METHODS:
        raise UserError(f"unknown attribution method {method!r}; choose one of {list(METHODS)}")
    if steps < 1:
        raise UserError(f"steps must be ≥ 1, got {steps}")
    box = _check(model, box, label, image)
    image = image.detach().float()
    if method == "integrated_gradients":
        return _integrated_gradients(model, image, box, label, steps, internal_batch_size).sum(0).cpu().numpy()
    score = box_score_function(model, box, label)
    if method == "saliency":
        grads = Saliency(score).attribute(image[None].clone().requires_grad_(), abs=True)[0]
        return grads.amax(0).detach().cpu().numpy()
    layer = level_module(model, box_level(model, image, box) if level == "auto" else level)
    cam = LayerGradCam(score, layer).attribute(image[None].clone().requires_grad_(), relu_attributions=True)
    with torch.no_grad():
        inputs, _ = model.transform([image])
        h, w = inputs.image_sizes[0]
        cam = F.interpolate(cam.detach(), size=inputs.tensors.shape[-2:], mode="bilinear", align_corners=False)
        cam = F.interpolate(cam[..., :h, :w], size=image.shape[-2:], mode="bilinear", align_corners=False)
    return cam[0, 0].cpu().numpy()


def ig_completeness(
    model: nn.Module, image: torch.Tensor, box: torch.Tensor, label: int, steps: int = 32
) -> tuple[float, float]:
    """(sum of the Integrated Gradients attributions, score(image) − score(black image)): equal up to the
    quadrature error, which shrinks as ``steps`` grows."""
    box = _check(model, box, label, image)
    image = image.detach().float()
    total = float(_integrated_gradients(model, image, box, label, steps, 8).sum())
    score = box_score_function(model, box, label)
    with torch.no_grad():
        difference = float(score(image[None])[0] - score(_baseline(image[None]))[0])
    return total, difference


def attribute_models(
    models: Mapping[str, nn.Module],
    image: torch.Tensor,
    box: torch.Tensor,
    label: int,
    methods: tuple[str, ...] = METHODS,
    level: str = "auto",
    steps: int = 32,
) -> dict[str, dict[str, np.ndarray]]:
    """``{role: {method: H x W map}}`` for several detectors on the same box, for :func:`plot_attributions`."""
    return {
        role: {method: attribute(model, image, box, label, method, level, steps) for method in methods}
        for role, model in models.items()
    }


def box_scores(models: Mapping[str, nn.Module], image: torch.Tensor, box: torch.Tensor, label: int) -> dict[str, float]:
    """``{role: score}`` of the box for several detectors (figure titles)."""
    return {role: box_score(model, image, box, label) for role, model in models.items()}
