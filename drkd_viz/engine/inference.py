"""Inference over datasets and images, evaluation of run folders, and the student-only export."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drkd_viz.data.coco import CocoDetection
from drkd_viz.data.images import load_image
from drkd_viz.engine.checkpoint import WEIGHTS_FILE, latest_checkpoint, verify_checkpoint
from drkd_viz.engine.config import RunConfig, load_config
from drkd_viz.engine.data import open_split
from drkd_viz.engine.distributed import DistInfo, gather_objects
from drkd_viz.errors import UserError
from drkd_viz.evaluation import EvalResult, evaluate_detections, write_metrics
from drkd_viz.models.factory import RESNETS, DetectorConfig, build_detector
from drkd_viz.models.weights import read_safetensors
from drkd_viz.runs import EVAL_DETECTIONS, EVAL_METRICS, EXPORT_BUILDER, EXPORT_INFO, EXPORT_WEIGHTS, RunFolder
from drkd_viz.utils.io import atomic_write_json, atomic_write_text

STUDENT_PREFIX = "student."


def to_device(targets: list[dict], device: torch.device) -> list[dict]:
    return [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]


@torch.no_grad()
def predict_dataset(
    model: nn.Module,
    dataset: CocoDetection,
    device: torch.device,
    batch_size: int = 8,
    info: DistInfo | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """COCO results (x, y, w, h in original image pixels, COCO category ids) for every image of
    ``dataset``. Under torchrun each rank predicts a shard and every rank gets all detections."""
    from tqdm.auto import tqdm

    info = info or DistInfo()
    was_training = model.training
    model.eval()
    indices = list(range(info.rank, len(dataset), info.world))
    detections: list[dict[str, Any]] = []
    bar = tqdm(total=len(indices), desc="predicting", unit="img", disable=not (progress and info.is_main), leave=False)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        images = [dataset[i][0].to(device) for i in chunk]
        outputs = model(images)
        for i, out in zip(chunk, outputs, strict=True):
            image_id = dataset.ids[i]
            for box, score, label in zip(
                out["boxes"].tolist(), out["scores"].tolist(), out["labels"].tolist(), strict=True
            ):
                x1, y1, x2, y2 = box
                detections.append(
                    {
                        "image_id": image_id,
                        "category_id": dataset.label_to_category_id(label),
                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                        "score": round(score, 5),
                    }
                )
        bar.update(len(chunk))
    bar.close()
    model.train(was_training)
    if info.enabled:
        detections = [d for part in gather_objects(info, detections) for d in part]
    return sorted(detections, key=lambda d: (d["image_id"], -d["score"]))


def evaluate_model(
    model: nn.Module,
    dataset: CocoDetection,
    out_dir: Path | None,
    device: torch.device,
    batch_size: int = 8,
    info: DistInfo | None = None,
    progress: bool = True,
    backend: str = "faster",
) -> EvalResult:
    """Predict, evaluate exactly the detections that are written, and (rank 0) write
    ``out_dir/detections.json`` and ``out_dir/metrics.json``. ``backend``: faster-coco-eval (``faster``,
    equal to pycocotools to the last digit, tests/test_evaluation.py) or ``pycocotools``."""
    info = info or DistInfo()
    detections = predict_dataset(model, dataset, device, batch_size, info, progress)
    gt = dict(dataset.coco.dataset)
    if len(dataset.ids) != len(gt["images"]):  # evaluating a subset (max_eval_images): restrict the ground truth
        keep = set(dataset.ids)
        gt = {
            **gt,
            "images": [i for i in gt["images"] if i["id"] in keep],
            "annotations": [a for a in gt["annotations"] if a["image_id"] in keep],
        }
    result = evaluate_detections(gt, detections, backend=backend)  # type: ignore[arg-type]
    if out_dir is not None and info.is_main:
        atomic_write_json(out_dir / EVAL_DETECTIONS, detections, indent=None)
        write_metrics(result, out_dir / EVAL_METRICS)
    return result


# ---- run folders ----------------------------------------------------------------------------------------
def read_run_config(run_dir: str | os.PathLike) -> RunConfig:
    run = RunFolder(Path(run_dir))
    if not run.config.is_file():
        raise UserError(f"{run_dir} is not a run folder (no config.yaml); train one with drkd-viz train")
    return load_config(run.config)


def load_student(run_dir: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, RunConfig]:
    """The trained detector of a run: its export if present, else the newest complete checkpoint."""

    run = RunFolder(Path(run_dir))
    cfg = read_run_config(run_dir)
    model = build_detector(cfg.model)
    exported = run.export_weights
    if exported.is_file():
        state = read_safetensors(exported)
    else:
        ckpt = latest_checkpoint(run.checkpoints)
        if ckpt is None:
            raise UserError(f"{run_dir} has no trained weights yet (no export, no checkpoint)")
        verify_checkpoint(ckpt, None)
        state = {
            k[len(STUDENT_PREFIX) :]: v
            for k, v in read_safetensors(ckpt.path / WEIGHTS_FILE).items()
            if k.startswith(STUDENT_PREFIX)
        }
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # names and shapes that do not fit the architecture in config.yaml
        raise UserError(
            f"the weights of {run_dir} do not fit the detector its config.yaml describes "
            f"({str(exc).splitlines()[0][:200]} …); was config.yaml edited after training?"
        ) from None
    return model.to(device).eval(), cfg


def evaluate_run(
    run_dir: str | os.PathLike,
    split: str = "val",
    device: str = "cpu",
    batch_size: int = 8,
    progress: bool = True,
    backend: str = "faster",
) -> EvalResult:

    model, cfg = load_student(run_dir, device)
    dataset = open_split(cfg.data, split, train=False)
    return evaluate_model(
        model,
        dataset,
        RunFolder(Path(run_dir)).eval_dir(split),
        torch.device(device),
        batch_size,
        progress=progress,
        backend=backend,
    )


# ---- export ---------------------------------------------------------------------------------------------
def torchvision_snippet(cfg: DetectorConfig) -> str:
    """Python that builds this detector with torchvision alone (no drkd_viz), to load the export into."""

    n_levels = len(cfg.levels)
    sizes = cfg.resolved_anchor_sizes()
    norm = {"bn": "nn.BatchNorm2d", "frozen_bn": "FrozenBatchNorm2d", "gn": "partial(nn.GroupNorm, 32)"}[cfg.norm]
    lines = [
        "from functools import partial",
        "from torch import nn",
        "from torchvision.models import mobilenet_v3_large, resnet",
        "from torchvision.models.detection import FasterRCNN, RetinaNet",
        "from torchvision.models.detection.anchor_utils import AnchorGenerator",
        "from torchvision.models.detection.backbone_utils import BackboneWithFPN",
        "from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead",
        "from torchvision.models.detection.retinanet import RetinaNetHead",
        "from torchvision.models.detection.rpn import RPNHead",
        "from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign",
        "from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7",
        "",
    ]
    extra = (
        "LastLevelMaxPool()"
        if cfg.family == "faster_rcnn"
        else f"LastLevelP6P7({cfg.fpn_channels}, {cfg.fpn_channels})"
    )
    if cfg.backbone == "mobilenet_v3_large":
        lines += [
            f"body = mobilenet_v3_large(weights=None, norm_layer={norm}).features",
            f"backbone = BackboneWithFPN(body, {{'12': '0', '16': '1'}}, [112, 960], {cfg.fpn_channels}, {extra})",
        ]
    else:
        block, layers = RESNETS[cfg.backbone]
        stages = [1, 2, 3, 4] if cfg.family == "faster_rcnn" else [2, 3, 4]
        width = 64 * block.expansion
        return_layers = {f"layer{k}": str(i) for i, k in enumerate(stages)}
        channels = [width * 2 ** (k - 1) for k in stages]
        lines += [
            f"body = resnet.ResNet(resnet.{block.__name__}, {layers}, norm_layer={norm})",
            f"backbone = BackboneWithFPN(body, {return_layers}, {channels}, {cfg.fpn_channels}, {extra})",
        ]
    common = (
        f"min_size={cfg.min_size}, max_size={cfg.max_size}, image_mean={list(cfg.image_mean)}, "
        f"image_std={list(cfg.image_std)}"
    )
    if cfg.family == "faster_rcnn":
        lines += [
            f"anchors = AnchorGenerator({tuple((s,) for s in sizes)}, ({cfg.aspect_ratios},) * {n_levels})",
            "model = FasterRCNN(",
            "    backbone, num_classes=None, rpn_anchor_generator=anchors,",
            f"    rpn_head=RPNHead({cfg.fpn_channels}, anchors.num_anchors_per_location()[0]),",
            f"    box_roi_pool=MultiScaleRoIAlign({[str(i) for i in range(n_levels - 1)]}, 7, 2),",
            f"    box_head=TwoMLPHead({cfg.fpn_channels} * 49, {cfg.box_head_width}),",
            f"    box_predictor=FastRCNNPredictor({cfg.box_head_width}, {cfg.num_classes}),",
            f"    rpn_pre_nms_top_n_test={cfg.rpn_pre_nms_top_n_test},",
            f"    rpn_post_nms_top_n_test={cfg.rpn_post_nms_top_n_test},",
            f"    box_detections_per_img={cfg.detections_per_image}, box_score_thresh={cfg.score_thresh},",
            f"    {common})",
        ]
    else:
        scaled = tuple(tuple(round(s * 2 ** (k / 3)) for k in range(3)) for s in sizes)
        lines += [
            f"anchors = AnchorGenerator({scaled}, ({cfg.aspect_ratios},) * {n_levels})",
            "model = RetinaNet(",
            f"    backbone, num_classes={cfg.num_classes}, anchor_generator=anchors,",
            f"    head=RetinaNetHead({cfg.fpn_channels}, anchors.num_anchors_per_location()[0], {cfg.num_classes}),",
            f"    topk_candidates={cfg.topk_candidates}, detections_per_img={cfg.detections_per_image},",
            f"    score_thresh={cfg.score_thresh}, {common})",
        ]
    return "\n".join(lines) + "\n"


def export_student(
    objective_state: dict[str, torch.Tensor], cfg: RunConfig, classes: list[dict], out_dir: Path
) -> Path:
    """Write the deployable student: a plain torchvision state dict (no distillation modules) plus
    ``student.json`` (architecture, classes) and ``build_student.py`` (torchvision-only builder)."""
    from safetensors.torch import save_file

    state = {
        k[len(STUDENT_PREFIX) :]: v.contiguous() for k, v in objective_state.items() if k.startswith(STUDENT_PREFIX)
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{EXPORT_WEIGHTS}.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, out_dir / EXPORT_WEIGHTS)
    snippet = torchvision_snippet(cfg.model)
    atomic_write_text(
        out_dir / EXPORT_BUILDER,
        "# Builds the exported student with torchvision only.\n"
        "# Then: model.load_state_dict(safetensors.torch.load_file('student.safetensors'))\n" + snippet,
    )
    atomic_write_json(
        out_dir / EXPORT_INFO,
        {"detector": cfg.model.to_dict(), "classes": classes, "weights": EXPORT_WEIGHTS, "builder": EXPORT_BUILDER},
    )
    return out_dir / EXPORT_WEIGHTS


def class_table(dataset: CocoDetection) -> list[dict]:
    return [
        {"label": dataset.category_id_to_label(c["id"]), "category_id": c["id"], "name": c["name"]}
        for c in dataset.categories
    ]


def predict_images(
    run_dir: str | os.PathLike,
    images: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    score_threshold: float = 0.3,
    device: str = "cpu",
) -> list[Path]:
    """Detect objects on image files; write ``<stem>.json`` (detections) and ``<stem>.png`` (overlay)."""
    from PIL import ImageDraw
    from torchvision.transforms.v2 import functional as TF

    run = RunFolder(Path(run_dir))
    missing = [str(p) for p in images if not Path(p).is_file()]
    if missing:  # before anything is loaded or written
        raise UserError(f"image file not found: {', '.join(missing[:5])}")
    model, _ = load_student(run_dir, device)
    info = json.loads(run.export_info.read_text()) if run.export_info.is_file() else {}
    names = {c["label"]: c["name"] for c in info.get("classes", [])}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    palette = [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
    ]
    for path in images:
        image = load_image(path)
        tensor = TF.to_dtype(TF.pil_to_tensor(image), torch.float32, scale=True).to(device)
        with torch.no_grad():
            result = model([tensor])[0]
        dets = [
            {
                "bbox_xyxy": [round(v, 2) for v in b],
                "score": round(s, 5),
                "label": lab,
                "class": names.get(lab, str(lab)),
            }
            for b, s, lab in zip(
                result["boxes"].tolist(), result["scores"].tolist(), result["labels"].tolist(), strict=True
            )
        ]
        stem = Path(path).stem
        atomic_write_json(out / f"{stem}.json", {"image": str(path), "detections": dets})
        draw = ImageDraw.Draw(image)
        for det in (d for d in dets if d["score"] >= score_threshold):
            colour = palette[det["label"] % len(palette)]
            draw.rectangle(det["bbox_xyxy"], outline=colour, width=2)
            x, y = det["bbox_xyxy"][:2]
            draw.text((x + 2, max(y - 11, 0)), f"{det['class']} {det['score']:.2f}", fill=colour)
        image.save(out / f"{stem}.png")
        written += [out / f"{stem}.json", out / f"{stem}.png"]
    return written
