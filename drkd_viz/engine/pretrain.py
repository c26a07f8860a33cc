"""Backbone pre-training: the stand-in for ImageNet weights on data that ships with the repository.

The paper's teachers and students start from ImageNet-pretrained backbones. Here a backbone is first
trained as a classifier on crops of the *train* split: one class per object category (a window
around the object at its own pixel scale, so features learn the sizes the detector sees) plus a
background class (windows that hold no object centre). The result is a torchvision classification
state dict (``conv1.*``, ``layer1.*`` …, ``fc.*``), which ``train.init_weights`` loads into the
detector's backbone exactly as it loads a real ImageNet file.

    drkd-viz pretrain --data runs/demo/data --backbone resnet10 --out pretrain/resnet10.safetensors
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from drkd_viz.errors import UserError
from drkd_viz.models.factory import RESNETS
from drkd_viz.utils.io import atomic_write, atomic_write_json, check_output_file

IMAGE_MEAN = (0.485, 0.456, 0.406)  # the detector's own normalisation (DetectorConfig's defaults)
IMAGE_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainConfig:
    backbone: str = "resnet10"
    crop_size: int = 48  # pixels fed to the network; windows are resized to it
    context: float = 1.5  # window side = max(crop_size, context x the object's longer box side)
    background_per_image: int = 2  # background windows drawn per training image
    iterations: int = 600
    batch_size: int = 128
    lr: float = 2e-3  # AdamW
    weight_decay: float = 0.05
    warmup_iters: int = 30
    val_fraction: float = 0.1  # crops held out (by image) to measure accuracy
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.backbone not in RESNETS:
            raise UserError(f"pretrain supports the ResNet backbones {sorted(RESNETS)}; got {self.backbone!r}")
        if self.crop_size < 32 or self.iterations < 1 or self.batch_size < 2:
            raise UserError("pretrain needs crop_size >= 32, iterations >= 1 and batch_size >= 2")


def _window(cx: float, cy: float, side: float, width: int, height: int) -> tuple[int, int, int, int]:
    """A square window of ``side`` centred on (cx, cy), shifted to lie inside the image where it fits."""
    side = min(side, width, height)
    x0 = min(max(cx - side / 2, 0), width - side)
    y0 = min(max(cy - side / 2, 0), height - side)
    return round(x0), round(y0), round(x0 + side), round(y0 + side)


def crop_dataset(
    images_dir: Path, annotation_file: Path, cfg: PretrainConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops (N, S, S, 3) uint8, labels (N,) with 0 = background and 1..K the categories in file order,
    and the index of the image each crop came from (to hold out whole images)."""
    coco = json.loads(Path(annotation_file).read_text())
    label_of = {c["id"]: i + 1 for i, c in enumerate(coco["categories"])}
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        if not ann.get("iscrowd", 0):
            by_image.setdefault(ann["image_id"], []).append(ann)
    rng = np.random.default_rng(cfg.seed)
    size = cfg.crop_size
    crops, labels, sources = [], [], []
    for index, info in enumerate(coco["images"]):
        anns = by_image.get(info["id"], [])
        image = Image.open(Path(images_dir) / info["file_name"]).convert("RGB")
        width, height = image.size
        for ann in anns:
            x, y, w, h = ann["bbox"]
            side = max(size, cfg.context * max(w, h))
            box = _window(x + w / 2, y + h / 2, side, width, height)
            crops.append(np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=box)))
            labels.append(label_of[ann["category_id"]])
            sources.append(index)
        centres = np.array([[a["bbox"][0] + a["bbox"][2] / 2, a["bbox"][1] + a["bbox"][3] / 2] for a in anns])
        for _ in range(cfg.background_per_image):
            for _attempt in range(10):  # a window with no object centre in it
                side = float(np.exp(rng.uniform(math.log(size), math.log(max(size + 1, min(width, height) / 2)))))
                box = _window(rng.uniform(0, width), rng.uniform(0, height), side, width, height)
                inside = (
                    len(centres)
                    and (
                        (centres[:, 0] >= box[0])
                        & (centres[:, 0] < box[2])
                        & (centres[:, 1] >= box[1])
                        & (centres[:, 1] < box[3])
                    ).any()
                )
                if not inside:
                    crops.append(np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=box)))
                    labels.append(0)
                    sources.append(index)
                    break
    if not crops:
        raise UserError(f"{annotation_file} has no objects to pre-train on")
    return np.stack(crops), np.asarray(labels, np.int64), np.asarray(sources, np.int64)


def build_classifier(backbone: str, num_classes: int) -> nn.Module:
    """The detector's backbone body (same module names: ``conv1``, ``layer1`` …) with a classifier ``fc``."""
    from torchvision.models import resnet

    block, layers = RESNETS[backbone]
    return resnet.ResNet(block, layers, num_classes=num_classes, zero_init_residual=True)


def _to_tensor(batch: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Horizontal flips and small brightness/contrast changes (the detector's training flips too)."""
    n = x.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    scale = 1 + 0.2 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
    shift = 0.2 * (torch.rand(n, 1, 1, 1, generator=generator) - 0.5)
    return x * scale + shift


def accuracy(model: nn.Module, crops: np.ndarray, labels: np.ndarray, batch: int = 256) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(crops), batch):
            logits = model(_to_tensor(crops[start : start + batch]))
            correct += int((logits.argmax(1).numpy() == labels[start : start + batch]).sum())
    return correct / max(len(crops), 1)


def pretrain_backbone(
    images_dir: str | os.PathLike,
    annotation_file: str | os.PathLike,
    out: str | os.PathLike,
    cfg: PretrainConfig = PretrainConfig(),
    progress: bool = True,
) -> dict:
    """Train ``cfg.backbone`` as a crop classifier and write its weights to ``out`` (.safetensors) with a
    ``.json`` record beside it (config, crop counts, held-out accuracy, seconds). Returns the record."""
    from safetensors.torch import save
    from tqdm.auto import tqdm

    out = check_output_file(out)  # before minutes of training, not after
    if out.suffix != ".safetensors":
        raise UserError(f"pretrain writes a .safetensors file; got {out}")
    started = time.time()
    caller_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        crops, labels, sources = crop_dataset(Path(images_dir), Path(annotation_file), cfg)
        n_images = int(sources.max()) + 1
        held_out = sources >= n_images * (1 - cfg.val_fraction)  # the last images: no window shared with training
        train_x, train_y = crops[~held_out], labels[~held_out]
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        num_classes = int(labels.max()) + 1
        model = build_classifier(cfg.backbone, num_classes)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        def lr_at(step: int) -> float:
            if step < cfg.warmup_iters:
                return (step + 1) / cfg.warmup_iters
            t = (step - cfg.warmup_iters) / max(cfg.iterations - cfg.warmup_iters, 1)
            return 0.5 * (1 + math.cos(math.pi * t))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
        model.train()
        bar = tqdm(range(cfg.iterations), desc=f"pretrain {cfg.backbone}", unit="it", disable=not progress)
        for _ in bar:
            index = torch.randint(len(train_x), (cfg.batch_size,), generator=generator).numpy()
            x = _augment(_to_tensor(train_x[index]), generator)
            loss = F.cross_entropy(model(x), torch.from_numpy(train_y[index]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        record = {
            "config": asdict(cfg),
            "source": {"images": str(images_dir), "annotations": str(annotation_file)},
            "crops": {"train": int((~held_out).sum()), "held_out": int(held_out.sum()), "classes": num_classes},
            "held_out_accuracy": round(accuracy(model, crops[held_out], labels[held_out]), 4),
            "chance_accuracy": round(float(np.bincount(labels[held_out]).max() / max(held_out.sum(), 1)), 4),
            "seconds": round(time.time() - started, 1),
        }
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda fh: fh.write(save(state)))
        atomic_write_json(out.with_suffix(".json"), record)
        return record
    finally:
        torch.set_num_threads(caller_threads)
