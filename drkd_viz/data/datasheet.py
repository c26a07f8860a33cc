"""The embedded dataset's datasheet: what it is, how it was made, and its statistics, with figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drkd_viz.data.layout import DATASHEET, IMAGES
from drkd_viz.data.statistics import HIST_EDGES, MEDIUM_AREA, SMALL_AREA
from drkd_viz.data.synthetic import MIN_VISIBLE_FRACTION, SAME_CLASS_GAP, SPLITS, SyntheticPreset, resolve_preset
from drkd_viz.utils.figures import figure_png, new_figure
from drkd_viz.utils.io import atomic_write_bytes, atomic_write_text


def size_histogram_figure(stats: dict):
    """Bar chart of sqrt(object area) per split, with COCO's small / medium thresholds marked."""

    edges = np.asarray(HIST_EDGES)
    fig = new_figure(7, 3.4)
    ax = fig.subplots()
    width = np.diff(edges)
    for k, split in enumerate(SPLITS):
        counts = np.asarray(stats["splits"][split]["sqrt_area_histogram"]["counts"], float)
        frac = counts / max(counts.sum(), 1)
        ax.bar(edges[:-1] + width * (0.15 + 0.25 * k), frac, width=width * 0.25, align="edge", label=split)
    for thr, name in ((SMALL_AREA, "small | medium"), (MEDIUM_AREA, "medium | large")):
        ax.axvline(np.sqrt(thr), color="k", ls="--", lw=1)
        ax.text(np.sqrt(thr) + 2, ax.get_ylim()[1] * 0.9, name, fontsize=8)
    ax.set_xlabel("√(object area) in pixels, on the image as stored")
    ax.set_ylabel("fraction of instances")
    ax.set_title("Object sizes (COCO thresholds: area 32² and 96²)")
    ax.legend()
    return fig


def examples_figure(root: Path, coco: dict, count: int = 6):
    """A mosaic of the first ``count`` images of a split with their boxes and class names."""
    import matplotlib
    from matplotlib.patches import Rectangle
    from PIL import Image

    names = {c["id"]: c["name"] for c in coco["categories"]}
    cols = 3
    rows = int(np.ceil(count / cols))
    fig = new_figure(3.3 * cols, 3.3 * rows)
    axes = fig.subplots(rows, cols)
    palette = matplotlib.colormaps["tab10"]
    for ax, image in zip(np.ravel(axes), coco["images"][:count], strict=False):
        ax.imshow(Image.open(root / IMAGES / image["file_name"]))
        for ann in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = ann["bbox"]
            colour = palette(ann["category_id"] % 10)
            ax.add_patch(Rectangle((x, y), w, h, fill=False, ec=colour, lw=1.2))
            if ann["area"] >= SMALL_AREA:
                ax.text(x, y - 1, names[ann["category_id"]], color=colour, fontsize=6, va="bottom")
        ax.set_title(
            f"image {image['id']}: {sum(a['image_id'] == image['id'] for a in coco['annotations'])} objects",
            fontsize=8,
        )
        ax.axis("off")
    for ax in np.ravel(axes)[count:]:
        ax.axis("off")
    fig.suptitle("Embedded shapes dataset: instances of a class share one style within an image", fontsize=9)
    return fig


def write_datasheet(
    root: Path,
    stats: dict,
    coco_by_split: dict[str, dict],
    preset: SyntheticPreset | None = None,
    reference: dict | None = None,
) -> None:
    atomic_write_bytes(root / "size_histogram.png", figure_png(size_histogram_figure(stats), dpi=110))
    examples = examples_figure(root / "train", coco_by_split["train"])
    atomic_write_bytes(root / "examples.png", figure_png(examples, dpi=110))
    atomic_write_text(root / DATASHEET, datasheet_markdown(stats, preset, reference))


def datasheet_markdown(stats: dict, preset: SyntheticPreset | None = None, reference: dict | None = None) -> str:
    """The datasheet; ``reference``: a strong teacher's numbers on this data (see ``_reference_teacher``)."""
    preset = preset or resolve_preset(stats["preset"])
    lines = [
        *_introduction(stats, preset),
        *_how_it_is_drawn(preset),
        *_split_tables(stats),
        *_size_histogram_table(stats),
        "",
        "## Examples",
        "![examples](examples.png)",
        "",
        *_reference_teacher(reference),
        *_provenance(stats),
    ]
    return "\n".join(lines)


def _introduction(stats: dict, preset: SyntheticPreset) -> list[str]:
    return [
        f"# Datasheet: drkd_viz embedded shapes dataset (preset `{stats['preset']}`, seed {stats['seed']})",
        "",
        "## What it is",
        "A procedurally drawn object-detection dataset in COCO format, made to study distillation for",
        "small objects on a CPU. Images are "
        f"{preset.min_side}–{preset.max_side} px per side with 1–{preset.max_objects} objects each.",
        "",
        f"Classes ({len(stats['classes'])}): " + ", ".join(f"`{c}`" for c in stats["classes"]) + ".",
        "",
    ]


def _how_it_is_drawn(preset: SyntheticPreset) -> list[str]:
    return [
        "## How it is drawn",
        "- **Background**: a random crop of a real photograph or measured texture shipped with matplotlib",
        "  (Grace Hopper's portrait, two terrain elevation models rendered as shaded relief, an MRI slice),",
        "  colour-mixed, tinted with a gradient, and overdrawn with clutter (lines, arcs, blurred blobs).",
        "- **Objects**: each class is a shape drawn with a random colour, "
        + ("a solid fill" if preset.patterns == ("solid",) else "a texture (" + ", ".join(preset.patterns) + ")")
        + ",",
        "  aspect ratio and a rotation of up to ±30°, anti-aliased, with a one-pixel rim "
        f"(strength {preset.outline_contrast:g})",
        "  that is dark on a bright surround and light on a dark one, so every instance has a visible boundary.",
        "- **Relations carry information**: within one image, all instances of a class share one style",
        "  (colour, fill, aspect), while different classes get clearly different hues. Across images the",
        "  style of a class is random, so colour alone never tells the class. A small instance whose shape",
        "  is ambiguous on its own (a 16-px pentagon looks much like a circle) can be recognised from its similarity",
        "  to its larger siblings in the same image: the situation instance-wise relation distillation is",
        "  meant for.",
        "- **Occlusion**: larger objects are drawn first and smaller ones on top, each placed so that it",
        "  covers at most 30 % of an earlier one's box of another class; instances of the same class (same",
        f"  style) never overlap: their boxes stay {SAME_CLASS_GAP} px apart. An object with less than "
        f"{MIN_VISIBLE_FRACTION:.0%} of its pixels",
        "  visible is not drawn. Boxes are tight around the visible pixels; `area` is the visible",
        "  pixel count (as COCO's mask area), so COCO's small/medium/large buckets apply as on real COCO.",
        "- **Determinism**: every image depends only on (seed, split, index); the same seed gives",
        "  byte-identical annotations.",
        "",
    ]


def _split_tables(stats: dict) -> list[str]:
    """Images, instances and size buckets per split, then instances per class and split."""
    lines = [
        "## Splits",
        "`train` for training, `val` for tuning (schedules, loss weights), `test` for reported numbers only.",
        "",
        "| split | images | instances | objects/image (min/mean/max) | small | medium | large |",
        "|---|---|---|---|---|---|---|",
    ]
    for split in SPLITS:
        s = stats["splits"][split]
        opi = s["objects_per_image"]
        f = s["size_fractions"]
        lines.append(
            f"| {split} | {s['images']} | {s['instances']} | {opi['min']}/{opi['mean']}/{opi['max']} "
            f"| {s['sizes']['small']} ({f['small']:.0%}) | {s['sizes']['medium']} ({f['medium']:.0%}) "
            f"| {s['sizes']['large']} ({f['large']:.0%}) |"
        )
    lines += [
        "",
        "Instances per class:",
        "",
        "| class | " + " | ".join(SPLITS) + " |",
        "|---|" + "---|" * len(SPLITS),
    ]
    for name in stats["classes"]:
        lines.append(f"| {name} | " + " | ".join(str(stats["splits"][s]["per_class"][name]) for s in SPLITS) + " |")
    return lines


def _size_histogram_table(stats: dict) -> list[str]:
    lines = [
        "",
        "## Size histogram",
        "![object sizes](size_histogram.png)",
        "",
        "| √area (px) | " + " | ".join(SPLITS) + " |",
        "|---|" + "---|" * len(SPLITS),
    ]
    edges = HIST_EDGES
    for b in range(len(edges) - 1):
        row = [str(stats["splits"][s]["sqrt_area_histogram"]["counts"][b]) for s in SPLITS]
        lines.append(f"| {edges[b]}–{edges[b + 1]} | " + " | ".join(row) + " |")
    return lines


def _provenance(stats: dict) -> list[str]:
    return [
        "## Provenance and licence",
        "Generated by `drkd-viz data --preset "
        f"{stats['preset']} --seed {stats['seed']}` (generator version {stats['generator_version']}) in "
        f"{stats['generation_seconds']} s. Background textures come from matplotlib's bundled sample data",
        "(matplotlib licence); everything else is drawn by the generator.",
        "",
    ]


def _reference_teacher(reference: dict | None) -> list[str]:
    """How hard the data is, as the AP of a strong teacher on its test split (the caller's ``reference``: detector,
    test metrics, file and rebuild command of the teacher shipped for this preset; nothing without one)."""
    if reference is None:
        return []
    test, detector = reference["test"], reference["detector"]
    return [
        "## How hard it is",
        f"A strong teacher ({detector['family']}, {detector['backbone']}-FPN{detector['fpn_channels']}, backbone "
        "pre-trained on crops of the train split) reaches on the test split:",
        "",
        "| AP | AP50 | AP75 | AP_S | AP_M | AP_L |",
        "|---|---|---|---|---|---|",
        "| " + " | ".join(f"{100 * test[k]:.1f}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")) + " |",
        "",
        f"It ships with the package (`drkd_viz/shipped/{reference['file']}`); rebuild it with "
        f"`{reference['command']}`.",
        "",
    ]
