"""The embedded default dataset's drawing: procedurally drawn shapes, rich in small objects, in COCO format
(presets, one image from its seed, the COCO records, the dataset's fingerprint).

Layout written by :func:`drkd_viz.data.embedded.generate_dataset`::

    OUT/
      datasheet.md            what the data is, how it was made, class list, counts, size histogram
      stats.json              the numbers behind the datasheet
      size_histogram.png      object sizes per split with COCO's small/medium thresholds
      examples.png            a mosaic of annotated training images
      train|val|test/
        images/000001.jpg ...
        annotations.json      COCO instances format (bbox, area, iscrowd, category_id)

An image depends only on (seed, split, index): generation is deterministic, and it does not matter
how many worker processes draw it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from drkd_viz.data.shapes import (
    CLASSES,
    ClassStyle,
    outline_rim,
    render_alpha,
    render_background,
    render_texture,
    sample_styles,
)
from drkd_viz.errors import UserError

GENERATOR_VERSION = 5  # bump when drawing changes: cached datasets are then rebuilt
SPLITS: tuple[str, ...] = ("train", "val", "test")
MIN_VISIBLE_FRACTION = 0.6  # objects more occluded than this are not drawn at all
MAX_ROTATION = math.radians(30)  # shapes stay roughly upright: shape is what tells the classes apart
MAX_PLACEMENT_OVERLAP = 0.3  # a new object may cover at most this fraction of an earlier one's box
MIN_VISIBLE_AREA = 20.0  # pixels; anything smaller is not a detectable object
# Instances of one class share one style within an image, so two of them that overlap have no visible
# boundary: their boxes are kept this many pixels apart (version 4 drew small stars on a big star).
SAME_CLASS_GAP = 2


@dataclass(frozen=True)
class SyntheticPreset:
    name: str
    split_sizes: dict[str, int]
    min_side: int = 224  # image sides are drawn from [min_side, max_side] in steps of 16
    max_side: int = 288
    max_objects: int = 20
    max_classes_per_image: int = 4
    # probability of an object being drawn small / medium / large, and the range of
    # sqrt(box area) in pixels for each (the mask's area is smaller than the box's)
    size_mix: tuple[float, float, float] = (0.5, 0.33, 0.17)
    # the smallest objects start at 16 px: chosen on the teacher's val AP (scripts/calibrate_dataset.py)
    size_ranges: tuple[tuple[float, float], ...] = ((16.0, 36.0), (36.0, 100.0), (100.0, 180.0))
    jpeg_quality: int = 92
    # difficulty knobs (calibrated on the teacher's val AP: see scripts/calibrate_dataset.py)
    clutter: float = 1.0  # multiplies the number of background lines, arcs and blobs (0: none)
    # textures a class style may take (shapes.PATTERNS: also stripes, checker, dots, gradient, noise); solid
    # fills were chosen on the teacher's val AP: patterns cut the shapes' edges, and at 16-36 px the shape
    # is what tells the classes apart
    patterns: tuple[str, ...] = ("solid",)
    outline_contrast: float = 0.6  # every instance gets a dark or light rim of this strength (0: none)
    background_contrast: float = 0.65  # weight of the texture against its own mean colour

    def settings(self) -> dict:
        """What determines the drawing (everything but the name): part of the dataset's fingerprint."""
        settings = asdict(self)
        settings.pop("name")
        return settings


PRESETS: dict[str, SyntheticPreset] = {
    "quick": SyntheticPreset("quick", {"train": 100, "val": 50, "test": 50}),
    # small images with objects of the usual pixel sizes: a training step costs ~0.5x a 256 px one
    "demo": SyntheticPreset(
        "demo",
        {"train": 2000, "val": 300, "test": 300},
        min_side=160,
        max_side=192,
        max_objects=16,
        size_mix=(0.6, 0.32, 0.08),
        size_ranges=((16.0, 36.0), (36.0, 96.0), (96.0, 140.0)),
    ),
}


def resolve_preset(preset: str | SyntheticPreset) -> SyntheticPreset:
    if isinstance(preset, SyntheticPreset):
        return preset
    if preset not in PRESETS:
        raise UserError(f"unknown dataset preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset]


@dataclass
class DrawnObject:
    category: str
    bbox: list[float]  # COCO [x, y, w, h], tight around the visible pixels
    area: float  # visible pixels (what COCO's small/medium/large split uses)
    visible_fraction: float


@dataclass
class DrawnImage:
    pixels: np.ndarray  # HxWx3 uint8
    objects: list[DrawnObject] = field(default_factory=list)


def image_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """Per-image seed: independent of worker count and of the other splits' sizes."""
    return np.random.SeedSequence([seed, SPLITS.index(split), index, GENERATOR_VERSION])


def _sample_box_side(rng: np.random.Generator, preset: SyntheticPreset) -> float:
    bucket = int(rng.choice(3, p=np.asarray(preset.size_mix) / sum(preset.size_mix)))
    lo, hi = preset.size_ranges[bucket]
    return float(np.exp(rng.uniform(math.log(lo), math.log(hi))))


def draw_image(rng: np.random.Generator, preset: SyntheticPreset) -> DrawnImage:
    """Draw one image and its annotations."""
    # the order of the random draws below is part of the dataset: changing it changes every image
    height = int(rng.integers(preset.min_side // 16, preset.max_side // 16 + 1)) * 16
    width = int(rng.integers(preset.min_side // 16, preset.max_side // 16 + 1)) * 16
    canvas = render_background(rng, height, width, clutter=preset.clutter, contrast=preset.background_contrast)
    assignment, styles = _sample_classes(rng, preset)
    layers = _place_objects(rng, preset, assignment, styles, height, width)
    keep, visible = _visible_layers(layers, height, width)
    objects = []
    for i in keep:
        category, style, alpha, x0, y0 = layers[i]
        _paint_object(rng, preset, canvas, style, alpha, x0, y0)
        drawn = _drawn_object(category, alpha, visible[i], x0, y0)
        if drawn is not None:
            objects.append(drawn)
    pixels = (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)
    return DrawnImage(pixels=pixels, objects=objects)


def _sample_classes(rng: np.random.Generator, preset: SyntheticPreset) -> tuple[list[str], dict[str, ClassStyle]]:
    """The class of each object to draw, and each class's style in this image."""
    n_objects = int(rng.integers(1, preset.max_objects + 1))
    n_classes = int(rng.integers(1, min(preset.max_classes_per_image, n_objects) + 1))
    classes = [CLASSES[i] for i in rng.choice(len(CLASSES), n_classes, replace=False)]
    styles = dict(zip(classes, sample_styles(rng, n_classes, preset.patterns), strict=True))
    # every class present at least once, the rest spread at random: several siblings per class
    assignment = classes + [classes[i] for i in rng.integers(0, n_classes, n_objects - n_classes)]
    return assignment, styles


def _place_objects(
    rng: np.random.Generator,
    preset: SyntheticPreset,
    assignment: list[str],
    styles: dict[str, ClassStyle],
    height: int,
    width: int,
) -> list[tuple]:
    """Size, shape mask and position of each object that finds a place: ``(category, style, alpha, x0, y0)``
    in drawing order."""
    # draw order: larger objects first, so the small ones lie on top and are rarely buried
    sides = [min(_sample_box_side(rng, preset), 0.8 * min(height, width)) for _ in assignment]
    order = sorted(range(len(assignment)), key=lambda i: -sides[i])
    layers: list[tuple] = []
    for category, side in ((assignment[i], sides[i]) for i in order):
        style = styles[category]
        w, h = side * math.sqrt(style.aspect), side / math.sqrt(style.aspect)
        alpha = render_alpha(category, w, h, float(rng.uniform(-MAX_ROTATION, MAX_ROTATION)))
        mh, mw = alpha.shape
        if mh >= height or mw >= width:
            continue
        place = _find_place(rng, category, mw, mh, width, height, layers)
        if place is not None:
            layers.append((category, style, alpha, *place))
    return layers


def _find_place(
    rng: np.random.Generator, category: str, mw: int, mh: int, width: int, height: int, layers: list[tuple]
) -> tuple[int, int] | None:
    """A few tries to find a place that does not bury an earlier object (occlusion stays partial) and keeps clear
    of every sibling of the same class (same style: no boundary to see); None when all fail."""
    for _ in range(8):
        x0, y0 = int(rng.integers(0, width - mw + 1)), int(rng.integers(0, height - mh + 1))
        if all(
            _apart(x0, y0, mw, mh, other)
            if other[0] == category
            else _covered(x0, y0, mw, mh, other) <= MAX_PLACEMENT_OVERLAP
            for other in layers
        ):
            return x0, y0
    return None


def _visible_layers(layers: list[tuple], height: int, width: int) -> tuple[list[int], dict[int, np.ndarray]]:
    """The layers to keep, and each one's coverage left after everything drawn on top of it."""
    # heavily occluded objects are removed and visibility recomputed until stable
    keep = list(range(len(layers)))
    while True:
        on_top = np.zeros((height, width), np.float32)
        visible = {}
        for i in reversed(keep):
            _, _, alpha, x0, y0 = layers[i]
            region = on_top[y0 : y0 + alpha.shape[0], x0 : x0 + alpha.shape[1]]
            visible[i] = alpha * (1 - region)
            region[...] = 1 - (1 - region) * (1 - alpha)
        dropped = [
            i
            for i in keep
            if visible[i].sum() < MIN_VISIBLE_FRACTION * layers[i][2].sum() or visible[i].sum() < MIN_VISIBLE_AREA
        ]
        if not dropped:
            return keep, visible
        keep = [i for i in keep if i not in dropped]


def _paint_object(
    rng: np.random.Generator,
    preset: SyntheticPreset,
    canvas: np.ndarray,
    style: ClassStyle,
    alpha: np.ndarray,
    x0: int,
    y0: int,
) -> None:
    """Blend the object's texture (with its rim) into ``canvas`` through its mask."""
    mh, mw = alpha.shape
    fill = render_texture(style, (mh, mw), rng)
    region = canvas[y0 : y0 + mh, x0 : x0 + mw]
    if preset.outline_contrast > 0:
        fill = outline_rim(fill, alpha, region, preset.outline_contrast)
    region[...] = region * (1 - alpha[..., None]) + fill * alpha[..., None]


def _drawn_object(category: str, alpha: np.ndarray, visible: np.ndarray, x0: int, y0: int) -> DrawnObject | None:
    """The annotation of an object: its box tight around the pixels at least half visible (None: no such pixel)."""
    ys, xs = np.nonzero(visible >= 0.5)
    if len(xs) == 0:
        return None
    bx0, by0, bx1, by1 = x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1
    # the coverage inside the tight box (anti-aliased fringes outside it are under half a pixel each)
    inside = visible[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return DrawnObject(
        category=category,
        bbox=[float(bx0), float(by0), float(bx1 - bx0), float(by1 - by0)],
        area=round(float(inside.sum()), 2),
        visible_fraction=round(float(visible.sum() / alpha.sum()), 3),
    )


def _apart(x0: int, y0: int, w: int, h: int, other: tuple) -> bool:
    """True if a box at (x0, y0, w, h) keeps ``SAME_CLASS_GAP`` pixels from ``other``'s box."""
    _, _, alpha, ox, oy = other
    oh, ow = alpha.shape
    g = SAME_CLASS_GAP
    return x0 + w + g <= ox or ox + ow + g <= x0 or y0 + h + g <= oy or oy + oh + g <= y0


def _covered(x0: int, y0: int, w: int, h: int, other: tuple) -> float:
    """Fraction of ``other``'s box that a box at (x0, y0, w, h) would cover."""
    _, _, alpha, ox, oy = other
    oh, ow = alpha.shape
    ix = max(0, min(x0 + w, ox + ow) - max(x0, ox))
    iy = max(0, min(y0 + h, oy + oh) - max(y0, oy))
    return ix * iy / (ow * oh)


def draw_and_save(job: tuple[int, str, int, SyntheticPreset, str]) -> dict:
    seed, split, index, preset, images_dir = job
    drawn = draw_image(np.random.default_rng(image_seed(seed, split, index)), preset)
    file_name = f"{index + 1:06d}.jpg"
    buffer = io.BytesIO()
    Image.fromarray(drawn.pixels).save(buffer, format="JPEG", quality=preset.jpeg_quality)
    Path(images_dir, file_name).write_bytes(buffer.getvalue())
    h, w = drawn.pixels.shape[:2]
    return {
        "index": index,
        "file_name": file_name,
        "height": h,
        "width": w,
        "objects": [asdict(o) for o in drawn.objects],
    }


def coco_dict(records: list[dict], split: str, preset: SyntheticPreset, seed: int) -> dict:
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)]
    cat_ids = {c["name"]: c["id"] for c in categories}
    images, annotations = [], []
    for rec in sorted(records, key=lambda r: r["index"]):
        image_id = rec["index"] + 1
        images.append({"id": image_id, "file_name": rec["file_name"], "height": rec["height"], "width": rec["width"]})
        for obj in rec["objects"]:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat_ids[obj["category"]],
                    "bbox": obj["bbox"],
                    "area": obj["area"],
                    "iscrowd": 0,
                    "visible_fraction": obj["visible_fraction"],
                }
            )
    info = {
        "description": f"drkd_viz embedded shapes dataset, preset {preset.name!r}, split {split!r}",
        "version": str(GENERATOR_VERSION),
        "seed": seed,
    }
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def fingerprint(preset: str | SyntheticPreset, seed: int) -> str:
    spec = resolve_preset(preset)
    settings = json.dumps(spec.settings(), sort_keys=True)
    return hashlib.sha256(f"{spec.name}:{seed}:{GENERATOR_VERSION}:{settings}".encode()).hexdigest()[:16]
