"""The ``drkd-viz`` command line. Every verb has ``--help``; user errors print one clear message."""

from __future__ import annotations

import os
import sys
import time
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer

from drkd_viz.errors import UserError
from drkd_viz.runs import RunFolder, RunsRoot, default_runs
from drkd_viz.runs.root import REPORT_MARKDOWN
from drkd_viz.utils.io import check_output_file, check_output_folder


# Typed choices: `--help` lists them, and a typo fails at once with the list.
class DatasetPreset(str, Enum):
    quick = "quick"
    demo = "demo"


class PipelinePresetName(str, Enum):
    quick = "quick"
    demo = "demo"
    study = "study"


class Split(str, Enum):
    val = "val"
    test = "test"


class Backend(str, Enum):
    faster = "faster"
    pycocotools = "pycocotools"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class Backbone(str, Enum):
    resnet10 = "resnet10"
    resnet18 = "resnet18"
    resnet34 = "resnet34"
    resnet50 = "resnet50"
    resnet101 = "resnet101"


app = typer.Typer(
    name="drkd-viz",
    help="Teach, run and analyse Dual Relation Knowledge Distillation (DRKD) for object detection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"drkd-viz {metadata.version('drkd_viz')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Teach, run and analyse Dual Relation Knowledge Distillation (DRKD) for object detection."""


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
        f"(generation took {stats['generation_seconds']} s); datasheet: {out / 'datasheet.md'}"
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


@app.command()
def pipeline(
    preset: Annotated[
        PipelinePresetName, typer.Option(help="quick (~2 min, tests), demo (the embedded default) or study (hours).")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Runs folder: data, teacher, students, report (default: $DRKD_RUNS, else runs/quick for quick "
            "and runs/demo for demo and study, which `drkd-viz app` shows by default)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    jobs: Annotated[
        int | None, typer.Option(help="Students trained at once, each in its own process (default: the preset's).")
    ] = None,
    shipped: Annotated[
        bool, typer.Option(help="Install a teacher shipped with the package when its config matches (else train it).")
    ] = True,
) -> None:
    """Data, teacher, baseline / feature-imitation / DRKD students, test evaluation and a report (cached)."""
    from drkd_viz.experiments.pipeline import run_pipeline

    started = time.perf_counter()

    out = check_output_folder(out if out is not None else default_runs(preset.value))
    run_pipeline(preset.value, out, quiet=quiet, jobs=jobs, use_shipped=shipped)
    report = RunsRoot(out).report_dir(preset.value) / REPORT_MARKDOWN
    typer.echo(report.read_text())
    typer.echo(f"report: {report} ({time.perf_counter() - started:.1f} s)")


@app.command()
def report(
    teacher: Annotated[Path, typer.Option(help="The teacher's run folder.")],
    baseline: Annotated[
        list[Path], typer.Option(help="The undistilled student's run folder; repeat it for several seeds.")
    ],
    out: Annotated[
        Path, typer.Option(help="RUNS/reports/NAME: `drkd-viz app --runs RUNS` shows the report; the runs lie in RUNS.")
    ],
    student: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=RUN, a distilled student; repeat it (the same NAME for several seeds). Name the DRKD student "
            "`drkd`: the relation pages inspect every model through its units."
        ),
    ] = None,
    split: Annotated[Split, typer.Option(help="The split to compare on (runs not evaluated on it are).")] = Split.test,
    timing: Annotated[
        bool, typer.Option(help="Time the teacher and the baseline on the CPU (slow for COCO-sized models).")
    ] = True,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """A report from any finished run folders (your own teacher, COCO runs, runs in different folders), in the
    pipeline's format: the dashboard and the notebooks show it."""
    from drkd_viz.experiments.from_runs import parse_student, report_from_runs

    students = [parse_student(spec) for spec in student or []]
    report_from_runs(teacher, baseline, students, out, split=split.value, timed=timing, progress=not quiet)
    typer.echo((out / REPORT_MARKDOWN).read_text())
    typer.echo(f"report: {out / REPORT_MARKDOWN}; show it with: drkd-viz app --runs {out.resolve().parent.parent}")


@app.command("app")
def dashboard(
    runs: Annotated[
        Path | None, typer.Option(help="Runs folder to show (default: $DRKD_RUNS, else runs/demo); it may be empty.")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 127.0.0.1 keeps the dashboard to this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
) -> None:
    """Serve the Streamlit dashboard of a runs folder (leaderboard, relations, small objects, attribution)."""
    from drkd_viz.runs import runs_root
    from drkd_viz.serving import check_entry, exec_server

    root = runs_root(runs)
    check_entry()
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(f"warning: listening on {host}: anyone who can reach this machine can use the dashboard", err=True)
    what = "" if RunsRoot(root).reports.is_dir() else " (no report yet: the dashboard offers to build one)"
    typer.echo(f"dashboard of {root}{what} at http://{host}:{port}  (Ctrl+C stops it)")
    exec_server(root, host=host, port=port)


@app.command()
def demo(
    runs: Annotated[
        Path | None, typer.Option(help="Runs folder (default: $DRKD_RUNS, else runs/<preset>, as for `pipeline`).")
    ] = None,
    preset: Annotated[
        DatasetPreset, typer.Option(help="demo (the embedded default, ~22 min on 2 cores) or quick (~2 min, tests).")
    ] = DatasetPreset.demo,
    app_: Annotated[
        bool, typer.Option("--app/--no-app", help="Open the dashboard on the runs when the report is ready.")
    ] = True,
    headless: Annotated[
        bool, typer.Option(help="Serve the dashboard without opening a browser (servers; print its URL).")
    ] = False,
    port: Annotated[int, typer.Option(help="Dashboard port (127.0.0.1 only).")] = 8501,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """The main job on the embedded default: data, teacher, baseline / feature-imitation / DRKD students,
    the test-split report (all cached), then the dashboard on those runs."""
    from drkd_viz.experiments.pipeline import run_pipeline
    from drkd_viz.serving import check_entry, exec_server

    out = check_output_folder(runs if runs is not None else default_runs(preset.value))
    started = time.perf_counter()
    report = run_pipeline(preset.value, out, quiet=quiet)
    folder = RunsRoot(out).report_dir(preset.value)
    typer.echo((folder / REPORT_MARKDOWN).read_text())
    cached = all(info["status"] == "cached" for info in report["provenance"]["runs"].values())
    typer.echo(
        f"report: {folder / REPORT_MARKDOWN} ({'all runs cached, ' if cached else ''}"
        f"{time.perf_counter() - started:.1f} s); dataset sheet: {out / 'data' / 'datasheet.md'}"
    )
    if not app_:
        return
    check_entry()
    typer.echo(f"dashboard of {out.resolve()} at http://127.0.0.1:{port}  (Ctrl+C stops it)")
    exec_server(out.resolve(), port=port, headless=headless)


def main() -> None:
    try:
        app()
    except UserError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except OSError as exc:  # a path that cannot be read or written: which one and why, not a traceback
        where = f" {exc.filename}" if exc.filename else ""
        typer.secho(
            f"error: cannot use{where}: {exc.strerror or exc}. Check that the path is right, that its parent folder "
            "exists (for an output) and that you may write there.",
            err=True,
            fg=typer.colors.RED,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
