"""A torch ``Dataset`` over any COCO-format detection dataset (the embedded one or real COCO 2017).

Targets follow torchvision's detection models: ``boxes`` (x1, y1, x2, y2 in pixels, float32),
``labels`` (int64, contiguous 1..K; 0 is the background of two-stage detectors), ``image_id``.
Category ids of the file (COCO's run 1..90 with gaps) are mapped to labels and back with
:meth:`CocoDetection.label_to_category_id` / :meth:`CocoDetection.category_id_to_label`.
Crowd annotations are left out of the targets, as in torchvision's detection references; the
evaluation reads them from the annotation file, where COCOeval ignores matches to them.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from pycocotools.coco import COCO
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from drkd_viz.data.images import DEFAULT_MAX_PIXELS, load_image
from drkd_viz.data.layout import split_files
from drkd_viz.data.validation import load_coco_file
from drkd_viz.errors import DatasetError

Target = dict[str, Any]


def coco_from_dict(data: dict) -> COCO:
    """A pycocotools ``COCO`` index over an in-memory dict (no file round trip, no prints)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(torch.utils.data.Dataset):
    """Images and targets of a COCO-format dataset.

    Args:
        images_dir: folder the ``file_name`` entries are relative to.
        annotation_file: COCO instances JSON.
        transforms: callable ``(image, target) -> (image, target)``, e.g. :func:`build_transforms`.
        skip_empty: leave out images without any non-crowd box (for training; keep them for evaluation).
        max_image_pixels: larger images are refused before they are decoded.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike,
        annotation_file: str | os.PathLike,
        transforms: Callable[[Any, Target], tuple[Any, Target]] | None = None,
        skip_empty: bool = False,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise DatasetError(f"images folder not found: {self.images_dir}")
        self.annotation_file = Path(annotation_file)
        data, self.report = load_coco_file(self.annotation_file)
        self.coco = coco_from_dict(data)
        self.transforms = transforms
        self.max_image_pixels = max_image_pixels
        categories = sorted(self.coco.dataset["categories"], key=lambda c: c["id"])
        self.categories = categories
        self._cat_to_label = {c["id"]: i + 1 for i, c in enumerate(categories)}
        self._label_to_cat = {i + 1: c["id"] for i, c in enumerate(categories)}
        self.class_names = ["__background__"] + [c["name"] for c in categories]
        ids = sorted(self.coco.imgs)
        if skip_empty:
            ids = [i for i in ids if any(not a.get("iscrowd", 0) for a in self.coco.imgToAnns[i])]
        self.ids = ids

    @classmethod
    def from_split(cls, root: str | os.PathLike, split: str, **kwargs: Any) -> CocoDetection:
        """Open ``root/split/{images, annotations.json}`` (the embedded dataset's layout)."""
        root = Path(root)
        return cls(*split_files(root, split), **kwargs)

    @property
    def num_classes(self) -> int:
        """Number of foreground classes + 1 (background), what torchvision's detectors expect."""
        return len(self.categories) + 1

    def category_id_to_label(self, category_id: int) -> int:
        return self._cat_to_label[category_id]

    def label_to_category_id(self, label: int) -> int:
        return self._label_to_cat[int(label)]

    def __len__(self) -> int:
        return len(self.ids)

    def image_info(self, index: int) -> dict:
        return self.coco.imgs[self.ids[index]]

    def load_image(self, index: int):
        info = self.image_info(index)
        return load_image(
            self.images_dir / info["file_name"],
            max_pixels=self.max_image_pixels,
            expected_size=(info["width"], info["height"]),
        )

    def raw_target(self, index: int) -> Target:
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        anns = [a for a in self.coco.imgToAnns[image_id] if not a.get("iscrowd", 0)]
        boxes = torch.tensor(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns],
            dtype=torch.float32,
        ).reshape(-1, 4)
        return {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(info["height"], info["width"])),
            "labels": torch.tensor([self._cat_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "image_id": image_id,
        }

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        image = tv_tensors.Image(TF.pil_to_tensor(self.load_image(index)))
        target = self.raw_target(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        target["boxes"] = target["boxes"].as_subclass(torch.Tensor)
        return TF.to_dtype(image, torch.float32, scale=True).as_subclass(torch.Tensor), target

    def describe(self) -> str:
        return self.report.summary()


def build_transforms(
    train: bool,
    hflip_prob: float = 0.5,
    shorter_sides: Sequence[int] | None = None,
    max_side: int | None = None,
) -> v2.Compose | None:
    """Data transforms that move boxes with the pixels (torchvision ``transforms.v2``).

    ``shorter_sides`` resizes the image so its shorter side is one of these (chosen at random in
    training), capped at ``max_side``. Detectors resize once more inside their own transform, so
    this is for multi-scale jitter or to keep large photos small in the loader. Boxes that become
    empty after a transform are dropped with their labels.
    """
    steps: list[Callable] = []
    if train and hflip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(hflip_prob))
    if shorter_sides:
        sides = list(shorter_sides) if train else [max(shorter_sides)]
        steps.append(v2.RandomShortestSize(min_size=sides, max_size=max_side, antialias=True))
    if not steps:
        return None
    steps += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0)]
    return v2.Compose(steps)


def collate_detection(batch: list[tuple[torch.Tensor, Target]]) -> tuple[list[torch.Tensor], list[Target]]:
    """Images of different sizes stay a list: torchvision detectors batch them themselves."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
