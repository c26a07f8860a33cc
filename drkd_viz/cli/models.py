"""Commands on one run or model: eval, train, predict, export, models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from drkd_viz.cli.entry import app
from drkd_viz.cli.options import Backend, Device, Split
from drkd_viz.errors import UserError
from drkd_viz.runs import RunFolder
from drkd_viz.utils.io import check_output_file, check_output_folder


@app.command("eval")
def evaluate(
    run: Annotated[Path | None, typer.Option(help="Run folder: evaluate its trained detector on --split.")] = None,
    split: Annotated[Split, typer.Option(help="With --run: val (tuning) or test (reported numbers).")] = Split.val,
    gt: Annotated[Path | None, typer.Option(help="Ground-truth COCO annotation JSON.")] = None,
    detections: Annotated[Path | None, typer.Option(help="Detections as a COCO results JSON list.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write metrics JSON here (AP … ARl, per_class, counts).")] = None,
    backend: Annotated[
        Backend,
        typer.Option(
            help="faster (faster-coco-eval, C++; equal to pycocotools, tests/test_evaluation.py) or pycocotools."
        ),
    ] = Backend.faster,
    device: Annotated[Device, typer.Option(help="With --run: where the detector runs.")] = Device.cpu,
) -> None:
    """COCO box evaluation: of a run folder (--run) or of a detections file (--gt, --detections)."""
    from drkd_viz.evaluation import evaluate_detections, write_metrics

    if run is not None:
        if gt is not None or detections is not None:
            raise UserError("give either --run or --gt with --detections, not both")
        from drkd_viz.engine.inference import evaluate_run

        result = evaluate_run(run, split=split.value, device=device.value, backend=backend.value)
        out_dir = RunFolder(run).eval_dir(split.value)
        typer.echo(f"{run} on {split.value}:")
    else:
        if gt is None or detections is None:
            raise UserError("give --run RUN_DIR, or both --gt ANN.json and --detections DETS.json")
        result = evaluate_detections(gt, detections, backend=backend.value)  # type: ignore[arg-type]
        out_dir = None
    for key, value in result.stats.items():
        typer.echo(f"{key:>6} {value:.4f}")
    if out is not None:
        write_metrics(result, check_output_file(out))
        typer.echo(f"metrics written to {out}")
    elif out_dir is not None:
        typer.echo(f"metrics and detections written to {out_dir}")


@app.command()
def train(
    config: Annotated[Path, typer.Option(help="Run config YAML (sections: data, model, optim, train, distill).")],
    out: Annotated[Path, typer.Option(help="Run folder to create (or continue with --resume).")],
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last complete checkpoint.")] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config value, e.g. --set train.iterations=50.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars (for logs).")] = False,
) -> None:
    """Train a detector (teacher or student, with or without distillation) into a run folder.

    Under `torchrun --nproc_per_node=N -m drkd_viz.cli train …` the same command trains with
    DistributedDataParallel; train.batch_size is the global batch."""
    from drkd_viz.engine.config import load_config
    from drkd_viz.engine.trainer import train as run_training

    cfg = load_config(config, overrides=set_)
    manifest = run_training(cfg, check_output_folder(out), resume=resume, quiet=quiet)
    if manifest and os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        typer.echo(f"run '{cfg.name}' {manifest.get('status')} in {manifest.get('wall_seconds')} s: {out}")
        for split, stats in (manifest.get("metrics") or {}).items():
            typer.echo(f"  {split}: AP {stats['AP']:.4f}  AP50 {stats['AP50']:.4f}  APs {stats['APs']:.4f}")


@app.command()
def predict(
    run: Annotated[Path, typer.Option(help="Run folder whose trained detector to use.")],
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    out: Annotated[Path, typer.Option(help="Folder for <image>.json detections and <image>.png overlays.")] = Path(
        "predictions"
    ),
    score_threshold: Annotated[float, typer.Option(help="Draw detections scoring at least this.")] = 0.3,
    device: Annotated[Device, typer.Option(help="Where the detector runs.")] = Device.cpu,
) -> None:
    """Detect objects on images with a run's detector: JSON detections and an overlay PNG per image."""
    from drkd_viz.engine.inference import predict_images

    written = predict_images(
        run, images, check_output_folder(out), score_threshold=score_threshold, device=device.value
    )
    typer.echo(f"wrote {len(written)} files to {out}")


@app.command()
def export(
    run: Annotated[Path, typer.Option(help="Run folder whose trained detector to export.")],
    onnx: Annotated[Path, typer.Option(help="ONNX file to write (.onnx); a .json record goes beside it.")],
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
) -> None:
    # the backslash keeps rich's markup from eating "[onnx]" in --help
    r"""Export a run's detector to ONNX, pre- and post-processing included, with a dynamic image size;
    check it against PyTorch with ONNX Runtime. Needs the onnx extra: pip install 'drkd_viz\[onnx]'."""
    from drkd_viz.engine.onnx_export import export_onnx

    record = export_onnx(run, check_output_file(onnx), opset=opset)
    check = record["parity_check"]
    typer.echo(f"wrote {onnx} ({onnx.stat().st_size / 1e6:.1f} MB, opset {opset}) and {onnx.with_suffix('.json')}")
    if "max_box_difference_px" in check:
        typer.echo(
            f"ONNX Runtime vs PyTorch on a {check['image_size']} image: {check['detections_onnx']} detections, "
            f"boxes within {check['max_box_difference_px']:.2g} px, scores within {check['max_score_difference']:.2g}, "
            f"labels {'equal' if check['labels_equal'] else 'DIFFERENT'}"
        )
    else:
        typer.secho(
            f"warning: ONNX Runtime found {check['detections_onnx']} detections, PyTorch {check['detections_torch']}",
            err=True,
        )


@app.command()
def models(
    num_classes: Annotated[int, typer.Option(help="Foreground classes + 1.")] = 9,
    min_size: Annotated[int, typer.Option(help="Shorter image side the detector resizes to.")] = 256,
) -> None:
    """List the detector families and backbones the factory builds, with their sizes."""
    from drkd_viz.models.factory import BACKBONES, FAMILIES, DetectorConfig, describe

    for family in FAMILIES:
        for backbone in BACKBONES:
            typer.echo(
                describe(DetectorConfig(family=family, backbone=backbone, num_classes=num_classes, min_size=min_size))
            )
