"""Build torchvision Faster R-CNN and RetinaNet detectors with an FPN, sized for the job.

Everything is torchvision's own public classes, assembled with the knobs that dominate CPU time
at small image sizes exposed (FPN width, head width, proposal counts, anchor sizes). No weights
are ever downloaded: ``weights=None`` everywhere; pretrained weights come from a local file
through :func:`drkd_viz.models.weights.load_weights`.

Module and parameter names are exactly torchvision's, so a torchvision state dict of the same
architecture (e.g. ``fasterrcnn_resnet50_fpn``'s) loads into the matching configuration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import Annotated, Literal

from torch import nn
from torchvision.models import mobilenet_v3_large, resnet
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from drkd_viz.errors import UserError
from drkd_viz.utils.typed_config import AT_LEAST_1, FRACTION, Range

Family = Literal["faster_rcnn", "retinanet"]
FAMILIES: tuple[str, ...] = ("faster_rcnn", "retinanet")
RESNETS: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet10": (resnet.BasicBlock, [1, 1, 1, 1]),
    "resnet18": (resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet34": (resnet.BasicBlock, [3, 4, 6, 3]),
    "resnet50": (resnet.Bottleneck, [3, 4, 6, 3]),
    "resnet101": (resnet.Bottleneck, [3, 4, 23, 3]),
}
BACKBONES: tuple[str, ...] = (*RESNETS, "mobilenet_v3_large")
NORMS: tuple[str, ...] = ("bn", "frozen_bn", "gn")


@dataclass
class DetectorConfig:
    """Everything that defines a detector's architecture and its inference behaviour.

    ``anchor_sizes`` has one base size per FPN level (smallest level first); ``None`` scales
    torchvision's COCO anchors (32 … 512 at 800 px) to ``min_size``.
    """

    family: Family = "faster_rcnn"
    backbone: str = "resnet18"
    num_classes: Annotated[int, Range(0, 100_000)] = (
        0  # foreground classes + 1 (background / unused label 0); 0 = take it from the dataset
    )
    fpn_channels: Annotated[int, Range(1, 4096)] = 128
    norm: Literal["bn", "frozen_bn", "gn"] = "bn"  # backbone normalisation: bn when training from scratch
    trainable_backbone_layers: Annotated[int, Range(0, 5)] = 5  # 5 = all; fewer freezes the stem and early stages
    min_size: Annotated[int, Range(16, 4096)] = 256
    max_size: Annotated[int, Range(16, 8192)] = 320
    image_mean: tuple[Annotated[float, FRACTION], ...] = (0.485, 0.456, 0.406)
    image_std: tuple[Annotated[float, Range(0, 10, low_open=True)], ...] = (0.229, 0.224, 0.225)
    anchor_sizes: tuple[Annotated[int, Range(1, 8192)], ...] | None = None
    aspect_ratios: tuple[Annotated[float, Range(0.01, 100)], ...] = (0.5, 1.0, 2.0)
    # two-stage (Faster R-CNN)
    rpn_pre_nms_top_n_train: Annotated[int, AT_LEAST_1] = 600
    rpn_post_nms_top_n_train: Annotated[int, AT_LEAST_1] = 300
    rpn_pre_nms_top_n_test: Annotated[int, AT_LEAST_1] = 300
    rpn_post_nms_top_n_test: Annotated[int, AT_LEAST_1] = 150
    rpn_batch_size_per_image: Annotated[int, AT_LEAST_1] = 256
    box_batch_size_per_image: Annotated[int, AT_LEAST_1] = 128
    box_head_width: Annotated[int, Range(1, 16384)] = 256
    # one-stage (RetinaNet)
    topk_candidates: Annotated[int, AT_LEAST_1] = 300
    # both
    detections_per_image: Annotated[int, AT_LEAST_1] = 100
    score_thresh: Annotated[float, FRACTION] = 0.05

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise UserError(f"unknown detector family {self.family!r}; choose one of {list(FAMILIES)}")
        if self.backbone not in BACKBONES:
            raise UserError(f"unknown backbone {self.backbone!r}; choose one of {list(BACKBONES)}")
        if self.norm not in NORMS:
            raise UserError(f"unknown norm {self.norm!r}; choose one of {list(NORMS)}")
        if self.num_classes == 1 or self.num_classes < 0:
            raise UserError(f"num_classes must count the background too (>= 2), got {self.num_classes}")
        if not 0 <= self.trainable_backbone_layers <= 5:
            raise UserError(f"trainable_backbone_layers must be in 0..5, got {self.trainable_backbone_layers}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise UserError(
                f"image_mean and image_std need 3 values (R, G, B), got {self.image_mean}, {self.image_std}"
            )
        if self.max_size < self.min_size:
            raise UserError(f"max_size ({self.max_size}) must be >= min_size ({self.min_size})")
        if not self.aspect_ratios:
            raise UserError("aspect_ratios needs at least one ratio, e.g. [0.5, 1.0, 2.0]")
        levels = self.levels
        if self.anchor_sizes is not None and len(self.anchor_sizes) != len(levels):
            raise UserError(f"anchor_sizes needs one size per FPN level {levels}, got {list(self.anchor_sizes)}")
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)
        if self.anchor_sizes is not None:
            self.anchor_sizes = tuple(int(s) for s in self.anchor_sizes)
        self.aspect_ratios = tuple(float(a) for a in self.aspect_ratios)

    @property
    def levels(self) -> list[str]:
        """FPN levels this detector produces, named by stride: P<k> has stride 2**k."""
        if self.backbone == "mobilenet_v3_large":
            first, count = 4, 2  # the last stride-16 and stride-32 blocks
        else:
            first, count = (2, 4) if self.family == "faster_rcnn" else (3, 3)
        return [f"P{first + i}" for i in range(count + (1 if self.family == "faster_rcnn" else 2))]

    def resolved_anchor_sizes(self) -> tuple[int, ...]:
        if self.anchor_sizes is not None:
            return self.anchor_sizes
        first_stride = 2 ** int(self.levels[0][1:])
        base = 32 * self.min_size / 800 * first_stride / (4 if self.family == "faster_rcnn" else 8)
        return tuple(max(4, round(base * 2**i)) for i in range(len(self.levels)))

    def to_dict(self) -> dict:
        return asdict(self)


def _norm_layer(norm: str):
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    return partial(nn.GroupNorm, 32)


def _freeze(body: nn.Module, trainable_layers: int, order: list[str]) -> None:
    """Freeze all but the last ``trainable_layers`` stages (torchvision's convention)."""
    trainable = order[len(order) - trainable_layers :] if trainable_layers else []
    for name, param in body.named_parameters():
        if not any(name.startswith(t) for t in trainable):
            param.requires_grad_(False)


def build_backbone(cfg: DetectorConfig) -> BackboneWithFPN:
    """A backbone + FPN whose outputs are the levels ``cfg.levels`` (torchvision's key names)."""
    extra = LastLevelMaxPool() if cfg.family == "faster_rcnn" else LastLevelP6P7(cfg.fpn_channels, cfg.fpn_channels)
    norm_layer = _norm_layer(cfg.norm)
    if cfg.backbone == "mobilenet_v3_large":
        # Same parameter names as torchvision's fasterrcnn_mobilenet_v3_large_fpn, but the FPN width
        # is configurable (torchvision fixes 256) and the first level is the last stride-16 block
        # (torchvision takes the first stride-32 block, so both of its levels have stride 32).
        features = mobilenet_v3_large(weights=None, norm_layer=norm_layer).features
        stage_starts = [0, 2, 4, 7, 13, 16]  # first block of each stage of mobilenet_v3_large.features
        if cfg.trainable_backbone_layers < 5:
            t = cfg.trainable_backbone_layers
            for block in features[: len(features) if t == 0 else stage_starts[6 - t]]:
                block.requires_grad_(False)
        return BackboneWithFPN(
            features,
            return_layers={"12": "0", "16": "1"},
            in_channels_list=[112, 960],
            out_channels=cfg.fpn_channels,
            extra_blocks=extra,
        )
    block, layers = RESNETS[cfg.backbone]
    body = resnet.ResNet(block, layers, norm_layer=norm_layer, zero_init_residual=True)
    _freeze(body, cfg.trainable_backbone_layers, ["conv1", "layer1", "layer2", "layer3", "layer4"])
    stages = [1, 2, 3, 4] if cfg.family == "faster_rcnn" else [2, 3, 4]
    width = 64 * block.expansion
    return BackboneWithFPN(
        body,
        return_layers={f"layer{k}": str(i) for i, k in enumerate(stages)},
        in_channels_list=[width * 2 ** (k - 1) for k in stages],
        out_channels=cfg.fpn_channels,
        extra_blocks=extra,
    )


def build_detector(cfg: DetectorConfig) -> nn.Module:
    """A randomly initialised torchvision detector (``FasterRCNN`` or ``RetinaNet``) for ``cfg``."""
    if cfg.num_classes < 2:
        raise UserError(
            "DetectorConfig.num_classes is not set: give foreground classes + 1 (the dataset's num_classes)"
        )
    backbone = build_backbone(cfg)
    n_levels = len(cfg.levels)
    common = dict(
        min_size=cfg.min_size,
        max_size=cfg.max_size,
        image_mean=list(cfg.image_mean),
        image_std=list(cfg.image_std),
    )
    sizes = cfg.resolved_anchor_sizes()
    if cfg.family == "faster_rcnn":
        anchors = AnchorGenerator(tuple((s,) for s in sizes), (cfg.aspect_ratios,) * n_levels)
        # Faster R-CNN pools boxes from every level but the extra max-pooled one (torchvision's choice)
        pooled = [str(i) for i in range(n_levels - 1)]
        return FasterRCNN(
            backbone,
            num_classes=None,
            rpn_anchor_generator=anchors,
            rpn_head=RPNHead(cfg.fpn_channels, anchors.num_anchors_per_location()[0]),
            box_roi_pool=MultiScaleRoIAlign(featmap_names=pooled, output_size=7, sampling_ratio=2),
            box_head=TwoMLPHead(cfg.fpn_channels * 7 * 7, cfg.box_head_width),
            box_predictor=FastRCNNPredictor(cfg.box_head_width, cfg.num_classes),
            rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
            rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
            rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
            rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
            rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
            box_batch_size_per_image=cfg.box_batch_size_per_image,
            box_detections_per_img=cfg.detections_per_image,
            box_score_thresh=cfg.score_thresh,
            **common,
        )
    # RetinaNet: three scales per octave, as in the paper and torchvision
    anchor_sizes = tuple(tuple(round(s * 2 ** (k / 3)) for k in range(3)) for s in sizes)
    anchors = AnchorGenerator(anchor_sizes, (cfg.aspect_ratios,) * n_levels)
    head = RetinaNetHead(cfg.fpn_channels, anchors.num_anchors_per_location()[0], cfg.num_classes)
    return RetinaNet(
        backbone,
        num_classes=cfg.num_classes,
        anchor_generator=anchors,
        head=head,
        topk_candidates=cfg.topk_candidates,
        detections_per_img=cfg.detections_per_image,
        score_thresh=cfg.score_thresh,
        **common,
    )


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def describe(cfg: DetectorConfig) -> str:
    model = build_detector(cfg)
    return (
        f"{cfg.family} / {cfg.backbone}-FPN{cfg.fpn_channels}, levels {'-'.join(cfg.levels)}, "
        f"anchors {cfg.resolved_anchor_sizes()}, {count_parameters(model) / 1e6:.2f} M parameters"
    )
