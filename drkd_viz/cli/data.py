"""Commands on datasets and backbones: data, pretrain, fit-units, check-data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from drkd_viz.cli.entry import app
from drkd_viz.cli.options import Backbone, DatasetPreset
from drkd_viz.data.layout import DATASHEET
from drkd_viz.errors import UserError
from drkd_viz.runs import RunFolder
from drkd_viz.utils.io import check_output_folder


def _print_stats_table(stats: dict) -> None:
    typer.echo(f"{'split':<6} {'images':>7} {'objects':>8} {'obj/img':>8} {'small':>12} {'medium':>12} {'large':>12}")
    for split, s in stats["splits"].items():
        f = s["size_fractions"]
        typer.echo(
            f"{split:<6} {s['images']:>7} {s['instances']:>8} {s['objects_per_image']['mean']:>8} "
            f"{s['sizes']['small']:>6} ({f['small']:>4.0%}) {s['sizes']['medium']:>5} ({f['medium']:>4.0%}) "
            f"{s['sizes']['large']:>5} ({f['large']:>4.0%})"
        )


@app.command()
def data(
    out: Annotated[Path, typer.Option(help="Folder to write the dataset to (train/val/test + datasheet).")],
    preset: Annotated[
        DatasetPreset, typer.Option(help="Dataset size: quick (~100/50/50 images) or demo (2000/300/300).")
    ] = DatasetPreset.demo,
    seed: Annotated[int, typer.Option(help="Seed; the same (preset, seed) gives byte-identical annotations.")] = 0,
    workers: Annotated[int, typer.Option(help="Drawing processes (0 = one per CPU core, up to 8).")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a different dataset already in --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Generate the embedded small-object shapes dataset in COCO format."""
    from drkd_viz.data.embedded import generate_dataset
    from drkd_viz.data.synthetic import GENERATOR_VERSION
    from drkd_viz.shipped import reference_teacher

    check_output_folder(out)
    started = time.perf_counter()
    stats = generate_dataset(
        out,
        preset=preset.value,
        seed=seed,
        workers=workers or None,
        progress=not quiet,
        overwrite=overwrite,
        reference=reference_teacher(preset.value, GENERATOR_VERSION),
    )
    _print_stats_table(stats)
    typer.echo(
        f"dataset '{preset.value}' (seed {seed}) ready in {out} after {time.perf_counter() - started:.1f} s "
        f"(generation took {stats['generation_seconds']} s); datasheet: {out / DATASHEET}"
    )


@app.command()
def pretrain(
    data: Annotated[Path, typer.Option(help="Dataset root with train/images and train/annotations.json.")],
    out: Annotated[Path, typer.Option(help="Weights file to write (.safetensors); a .json record goes beside it.")],
    backbone: Annotated[Backbone, typer.Option(help="ResNet backbone to pre-train.")] = Backbone.resnet10,
    iterations: Annotated[int, typer.Option(help="Training steps of the crop classifier.")] = 600,
    batch_size: Annotated[int, typer.Option(help="Crops per step.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    threads: Annotated[int, typer.Option(help="Torch CPU threads (0 = torch's default).")] = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Pre-train a backbone as a classifier of object and background crops of the train split only
    (a stand-in for ImageNet weights); load it with train.init_weights."""
    from drkd_viz.engine.config import DataConfig
    from drkd_viz.engine.pretrain import PretrainConfig, pretrain_backbone

    cfg = PretrainConfig(
        backbone=backbone.value, iterations=iterations, batch_size=batch_size, seed=seed, threads=threads or None
    )
    images, annotations = DataConfig(root=str(data)).split_paths("train")
    record = pretrain_backbone(images, annotations, out, cfg, progress=not quiet)
    typer.echo(
        f"{backbone.value} pre-trained in {record['seconds']} s on {record['crops']['train']} crops: held-out accuracy "
        f"{record['held_out_accuracy']:.1%} (chance {record['chance_accuracy']:.1%}); weights: {out}"
    )


@app.command("fit-units")
def fit_units(
    teacher: Annotated[Path, typer.Option(help="The teacher's finished run folder (its export/ and config.yaml).")],
    levels: Annotated[str, typer.Option(help="FPN levels, comma-separated (default: all the teacher's).")] = "",
    iterations: Annotated[int, typer.Option(help="Training steps of the units.")] = 200,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Fit teacher-side graph units on the frozen teacher's own detection loss, for distill.pr_teacher_units: fitted
    (with the default preset's node counts); cached in TEACHER/fitted_units/."""
    import json

    from drkd_viz.distill.config import DEFAULT
    from drkd_viz.distill.fitted_units import UnitFit
    from drkd_viz.engine.fit_units import fit_teacher_units
    from drkd_viz.models.weights import load_exported_detector

    if not RunFolder(teacher).export.is_dir():
        raise UserError(f"{teacher} is not a finished run folder (no export/); train the teacher first")
    if iterations < 1:
        raise UserError(f"--iterations must be at least 1, got {iterations}")
    _, detector = load_exported_detector(teacher)
    chosen = [lv.strip() for lv in levels.split(",") if lv.strip()] or list(detector.levels)
    unknown = [lv for lv in chosen if lv not in detector.levels]
    if unknown:
        raise UserError(f"--levels: {unknown} are not levels of this teacher; it has {list(detector.levels)}")
    fit = UnitFit(tuple(chosen), tuple(DEFAULT["nodes"][lv] for lv in chosen), DEFAULT["glore_normalize"], iterations)
    path = fit_teacher_units(teacher, fit, progress=not quiet)
    record = json.loads(path.with_suffix(".json").read_text())
    ratios = ", ".join(f"{lv} {v:.2f}" for lv, v in record["residual_ratio_last_batch"].items())
    typer.echo(f"fitted units: {path} (residual ‖G(x) − x‖ / ‖x‖: {ratios})")


@app.command("check-data")
def check_data(
    annotations: Annotated[Path, typer.Option(help="COCO instances JSON file.")],
    images: Annotated[Path, typer.Option(help="Folder the file_name entries are relative to.")],
    decode: Annotated[bool, typer.Option(help="Also open every image (slower; finds missing/corrupt files).")] = True,
) -> None:
    """Validate a COCO-format dataset and print what would be skipped, clipped or refused."""
    from tqdm.auto import tqdm

    from drkd_viz.data.coco import CocoDetection

    dataset = CocoDetection(images, annotations)
    typer.echo(dataset.describe())
    typer.echo(f"{len(dataset.categories)} categories -> labels 1..{len(dataset.categories)}")
    if decode:
        for i in tqdm(range(len(dataset)), desc="decoding images", unit="img"):
            dataset.load_image(i)
        typer.echo(f"all {len(dataset)} images decode")
