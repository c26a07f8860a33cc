"""The main-job command and the data verbs, as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_command_shows_the_report_then_serves_the_dashboard(quick_runs, tmp_path):
    """`make demo` runs `drkd-viz demo`: the (cached) pipeline, its report, then the dashboard."""
    import shutil
    import time
    import urllib.request

    from drkd_viz.serving import free_port

    shutil.copytree(quick_runs, tmp_path / "quick", symlinks=True)
    command = [
        sys.executable,
        "-m",
        "drkd_viz.cli",
        "demo",
        "--runs",
        str(tmp_path / "quick"),
        "--preset",
        "quick",
        "--quiet",
    ]
    proc = subprocess.run([*command, "--no-app"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "# drkd_viz experiments report — preset `quick`" in proc.stdout and "all runs cached" in proc.stdout
    assert "student runs" in proc.stdout and "faster than the teacher" in proc.stdout

    port = free_port()
    server = subprocess.Popen(
        [*command, "--headless", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline, health = time.time() + 120, None
        while time.time() < deadline and server.poll() is None:
            try:
                health = urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        assert health == b"ok", f"the dashboard did not come up (exit code {server.poll()})"
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert f"dashboard of {(tmp_path / 'quick').resolve()} at http://127.0.0.1:{port}" in out


def test_check_data_on_real_coco(mini_coco):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "drkd_viz.cli",
            "check-data",
            "--annotations",
            str(mini_coco / "annotations.json"),
            "--images",
            str(mini_coco / "images"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "55 images, 789 annotations (12 crowd)" in proc.stdout and "all 55 images decode" in proc.stdout


def test_version_and_typed_choices():
    """--version prints the installed version; a bad choice fails at once and lists the valid ones."""
    from importlib import metadata

    from typer.testing import CliRunner

    from drkd_viz.cli import app

    runner = CliRunner()
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.strip() == f"drkd-viz {metadata.version('drkd_viz')}"
    bad = runner.invoke(app, ["pipeline", "--preset", "demo2"])
    assert bad.exit_code == 2
    assert "demo2" in bad.output and all(name in bad.output for name in ("quick", "demo", "study"))
    for verb, option, choices in (
        ("eval", "--split", ("val", "test")),
        ("eval", "--backend", ("faster", "pycocotools")),
        ("predict", "--device", ("cpu", "cuda")),
        ("data", "--preset", ("quick", "demo")),
    ):
        text = runner.invoke(app, [verb, "--help"], terminal_width=200).output
        assert option in text and all(choice in text for choice in choices), (verb, option)
    assert "[default: faster]" in runner.invoke(app, ["eval", "--help"], terminal_width=200).output
    # rich markup would read the extra's name as a style tag and drop it
    assert "drkd_viz[onnx]" in runner.invoke(app, ["export", "--help"], terminal_width=200).output
    # the CLI spells its choices out (importing the factory would make --help slow): they must stay in step
    from drkd_viz.cli import Backbone, PipelinePresetName
    from drkd_viz.experiments.pipeline import PRESETS
    from drkd_viz.models.factory import RESNETS

    assert [b.value for b in Backbone] == list(RESNETS)
    assert {p.value for p in PipelinePresetName} == set(PRESETS)


def test_one_default_runs_folder(monkeypatch, tmp_path):
    """`pipeline --preset demo`, `app` and the notebooks all default to runs/demo; $DRKD_RUNS overrides."""
    from drkd_viz.runs import RUNS_ENV, default_runs, runs_root

    monkeypatch.delenv(RUNS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_runs("demo") == default_runs("study") == default_runs() == Path("runs/demo")
    assert default_runs("quick") == Path("runs/quick")
    assert runs_root() == (tmp_path / "runs" / "demo").resolve()
    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "mine"))
    assert default_runs("quick") == tmp_path / "mine" and runs_root() == (tmp_path / "mine").resolve()


def test_fit_units_checks_its_inputs_before_any_work(quick_runs, tmp_path):
    """`drkd-viz fit-units`: a folder that is not a finished run, a level the teacher lacks and a bad iteration
    count each get one clear line, no traceback."""
    base = [sys.executable, "-m", "drkd_viz.cli", "fit-units"]
    cases = [
        (["--teacher", str(tmp_path / "missing")], "is not a finished run folder"),
        (["--teacher", str(quick_runs / "teacher"), "--levels", "P2,P9"], "P9"),
        (["--teacher", str(quick_runs / "teacher"), "--iterations", "0"], "--iterations must be at least 1"),
    ]
    for args, message in cases:
        proc = subprocess.run([*base, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and message in proc.stderr + proc.stdout, proc.stderr
        assert "Traceback" not in proc.stderr


def test_an_output_path_that_cannot_be_written_is_one_clear_line(tmp_path):
    """An output folder under a file (or anywhere the OS refuses) names the path and the reason, no traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "drkd_viz.cli", "data", "--out", str(blocker / "data"), "--preset", "quick", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "error: cannot use" in proc.stderr and "a-file" in proc.stderr and "Not a directory" in proc.stderr
