"""Calibrate the embedded dataset's difficulty: train the demo teacher for a fixed short budget on
variants of the generator (one knob changed at a time from the base) and plot val AP against each knob.

    python scripts/calibrate_dataset.py --out runs/calibration [--iterations 200] [--only base,clutter-0]

The teacher's ResNet-18 is first pre-trained once on crops of the base variant's train split (as every
real detector starts from ImageNet weights; `drkd-viz pretrain`), and every variant's teacher starts from
it. Every variant is cached in OUT/<variant>/ (its dataset and its teacher run); rerunning skips finished
ones. Writes OUT/calibration.json (settings, dataset statistics, val metrics, wall time of each variant)
and OUT/calibration.png (val AP and AP_S per knob). Only the val split is used: this chooses settings.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from drkd_viz.data.embedded import generate_dataset
from drkd_viz.data.shapes import PATTERNS
from drkd_viz.data.synthetic import SyntheticPreset
from drkd_viz.engine.config import load_config
from drkd_viz.runs import RunFolder
from drkd_viz.utils.io import atomic_write_bytes, atomic_write_json

REPO = Path(__file__).resolve().parents[1]
# the base the knobs were turned from: generator version 5's first demo settings, with a small test split
# (only val is evaluated). The chosen demo preset is this base with the two changes that helped most on
# val: the smallest objects at 16 px (small-min-16) and solid fills (solid-only).
BASE = SyntheticPreset(
    "calibration",
    {"train": 2000, "val": 300, "test": 20},
    min_side=160,
    max_side=192,
    max_objects=16,
    size_mix=(0.6, 0.32, 0.08),
    size_ranges=((12.0, 36.0), (36.0, 96.0), (96.0, 140.0)),
    clutter=1.0,
    patterns=PATTERNS,
    outline_contrast=0.6,
    background_contrast=0.65,
)
SOLID = ("solid",)
# (variant name, knob, value shown on the curve, the preset's changed fields)
VARIANTS: list[tuple[str, str, float, dict]] = [
    ("base", "", 0.0, {}),
    ("small-min-8", "smallest object side (px)", 8, {"size_ranges": ((8.0, 36.0), *BASE.size_ranges[1:])}),
    ("small-min-16", "smallest object side (px)", 16, {"size_ranges": ((16.0, 36.0), *BASE.size_ranges[1:])}),
    ("clutter-0", "clutter (x default)", 0.0, {"clutter": 0.0}),
    ("outline-0", "outline contrast", 0.0, {"outline_contrast": 0.0}),
    ("solid-only", "texture patterns", 1, {"patterns": SOLID}),
    ("side-224", "image side (px)", 240, {"min_side": 224, "max_side": 256}),
    ("clutter-2", "clutter (x default)", 2.0, {"clutter": 2.0}),
    ("outline-1", "outline contrast", 1.0, {"outline_contrast": 1.0}),
]
# teacher recipes tried on the base data at the same budget (not a knob of the data: not on the curves)
RECIPES: dict[str, list[str]] = {
    "recipe-adamw": ["optim.optimizer=adamw", "optim.lr=0.001", "optim.weight_decay=0.05"],
    "recipe-scratch": ["train.init_weights=null"],
}
# where the base sits on each knob's axis
BASE_VALUE = {
    "smallest object side (px)": BASE.size_ranges[0][0],
    "clutter (x default)": BASE.clutter,
    "texture patterns": len(BASE.patterns),
    "outline contrast": BASE.outline_contrast,
    "image side (px)": (BASE.min_side + BASE.max_side) / 2,
}


def pretrained_backbone(out: Path, iterations: int, quiet: bool) -> Path:
    """The ResNet-18 every variant's teacher starts from, pre-trained on the base variant's train split."""
    from drkd_viz.engine.pretrain import PretrainConfig, pretrain_backbone

    weights = out / "pretrain-resnet18.safetensors"
    if not weights.is_file():
        data = out / "base" / "data"
        generate_dataset(data, preset=BASE, progress=not quiet)
        cfg = PretrainConfig(backbone="resnet18", iterations=iterations)
        pretrain_backbone(data / "train" / "images", data / "train" / "annotations.json", weights, cfg, not quiet)
    return weights


def run_variant(
    out: Path, name: str, changes: dict, iterations: int, init: Path | None, quiet: bool, recipe: list[str] = ()
) -> dict:
    from drkd_viz.engine.trainer import train

    folder = out / name
    result_file = folder / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    spec: SyntheticPreset = replace(BASE, **changes)
    started = time.time()
    data = out / "base" / "data" if recipe else folder / "data"  # a recipe trains on the base data
    stats = generate_dataset(data, preset=spec, progress=not quiet)
    side = (spec.min_side + spec.max_side) // 2
    cfg = load_config(
        REPO / "configs" / "demo" / "teacher_faster_rcnn.yaml",
        overrides=[
            f"name=calibration-{name}",
            f"data.root={data}",
            "data.preset=null",
            f"model.min_size={spec.min_side}",
            f"model.max_size={max(spec.max_side, side)}",
            f"train.iterations={iterations}",
            f"train.checkpoint_every={iterations}",
            "train.eval_split=val",
            "optim.schedule=cosine",
            f"train.init_weights={init}" if init else "train.init_weights=null",
            *recipe,
        ],
    )
    manifest = train(cfg, folder / "teacher", resume=RunFolder(folder / "teacher").exists(), quiet=quiet)
    metrics = manifest["metrics"]["val"]
    result = {
        "name": name,
        "settings": spec.settings(),
        "iterations": iterations,
        "init_weights": str(init) if init else None,
        "recipe": list(recipe),
        "val": {k: metrics[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")},
        "size_fractions": stats["splits"]["val"]["size_fractions"],
        "objects_per_image": stats["splits"]["val"]["objects_per_image"],
        "wall_seconds": round(time.time() - started, 1),
    }
    atomic_write_json(result_file, result)
    return result


def curve_figure(results: dict[str, dict]):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    # only the knobs with a finished variant (the others are named in the title)
    knobs = [k for k in BASE_VALUE if any(kn == k and n in results for n, kn, _, _ in VARIANTS)]
    missing = [k for k in BASE_VALUE if k not in knobs]
    fig, axes = plt.subplots(1, len(knobs), figsize=(3.2 * len(knobs), 3.0), sharey=True, squeeze=False)
    axes = axes[0]
    base = results.get("base")
    for ax, knob in zip(axes, knobs, strict=True):
        points = [(value, results[n]) for n, k, value, _ in VARIANTS if k == knob and n in results]
        if base:
            points.append((BASE_VALUE[knob], base))
        points.sort(key=lambda p: p[0])
        xs = [p[0] for p in points]
        for metric, style in (("AP", "o-"), ("APs", "s--")):
            ax.plot(xs, [100 * p[1]["val"][metric] for p in points], style, label=metric)
        if base:
            ax.axvline(BASE_VALUE[knob], color="grey", lw=0.8, ls=":")
        ax.set_xlabel(knob)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("val AP (%)")
    axes[0].legend()
    its = next(iter(results.values()))["iterations"] if results else 0
    title = f"Teacher val AP after {its} iterations per generator setting (dotted: the base)"
    if missing:
        title += "\nnot measured yet: " + ", ".join(missing)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/calibration")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--pretrain-iterations", type=int, default=300, help="0: teachers from scratch")
    parser.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    parser.add_argument("--plot", action="store_true", help="train nothing: plot the variants already finished")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(filter(None, args.only.split(","))) or {v[0] for v in VARIANTS} | set(RECIPES)
    if args.plot:
        wanted = set()
    init = (
        pretrained_backbone(out, args.pretrain_iterations, args.quiet) if args.pretrain_iterations and wanted else None
    )
    results = {}
    for name, _, _, changes in VARIANTS:
        if name in wanted:
            results[name] = run_variant(out, name, changes, args.iterations, init, args.quiet)
            r = results[name]
            print(
                f"{name:14s} val AP {100 * r['val']['AP']:5.1f}  AP_S {100 * r['val']['APs']:5.1f}  "
                f"small {r['size_fractions']['small']:.0%}  {r['wall_seconds']:.0f} s",
                flush=True,
            )
    for name, recipe in RECIPES.items():
        if name in wanted:
            results[name] = run_variant(out, name, {}, args.iterations, init, args.quiet, recipe)
            r = results[name]
            print(f"{name:14s} val AP {100 * r['val']['AP']:5.1f}  AP_S {100 * r['val']['APs']:5.1f}", flush=True)
    # every finished variant in OUT, whichever invocation (--only) ran it
    results = {f.parent.name: json.loads(f.read_text()) for f in sorted(out.glob("*/result.json"))}
    atomic_write_json(out / "calibration.json", results)
    import io

    import matplotlib.pyplot as plt

    fig = curve_figure(results)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(out / "calibration.png", buf.getvalue())


if __name__ == "__main__":
    main()
