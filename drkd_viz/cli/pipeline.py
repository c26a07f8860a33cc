"""Commands on a runs folder: pipeline, report, app (the dashboard), demo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from drkd_viz.cli.entry import app
from drkd_viz.cli.options import DatasetPreset, PipelinePresetName, Split
from drkd_viz.data.layout import DATASHEET
from drkd_viz.errors import UserError
from drkd_viz.runs import RunsRoot, default_runs
from drkd_viz.runs.root import REPORT_MARKDOWN
from drkd_viz.utils.io import check_output_folder


@app.command()
def pipeline(
    preset: Annotated[
        PipelinePresetName | None,
        typer.Option(help="quick (~2 min, tests), demo (the embedded default) or study (hours): configs/presets/."),
    ] = None,
    preset_file: Annotated[
        Path | None,
        typer.Option(help="A preset of your own (YAML; copy one of configs/presets/ to start), instead of --preset."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Runs folder: data, teacher, students, report (default: $DRKD_RUNS, else runs/quick for quick "
            "and runs/demo for the others, which `drkd-viz app` shows by default)."
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
    from drkd_viz.experiments.pipeline import preset_named, run_pipeline
    from drkd_viz.experiments.presets import load_preset

    if (preset is None) == (preset_file is None):
        raise UserError("give exactly one of --preset NAME (one of configs/presets/) and --preset-file FILE")
    started = time.perf_counter()
    chosen = preset_named(preset.value) if preset is not None else load_preset(preset_file)
    out = check_output_folder(out if out is not None else default_runs(chosen.name))
    run_pipeline(chosen, out, quiet=quiet, jobs=jobs, use_shipped=shipped)
    report = RunsRoot(out).report_dir(chosen.name) / REPORT_MARKDOWN
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
        f"{time.perf_counter() - started:.1f} s); dataset sheet: {RunsRoot(out).data / DATASHEET}"
    )
    if not app_:
        return
    check_entry()
    typer.echo(f"dashboard of {out.resolve()} at http://127.0.0.1:{port}  (Ctrl+C stops it)")
    exec_server(out.resolve(), port=port, headless=headless)
