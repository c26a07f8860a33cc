"""The main-job command and the data verbs, as a user runs them."""

from __future__ import annotations

import json
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


def test_an_os_error_is_one_clear_line(tmp_path):
    """A path the OS refuses deep inside a command (here a dataset folder that is not there) names the path and
    the reason, no traceback."""
    proc = subprocess.run(
        [
            *[sys.executable, "-m", "drkd_viz.cli", "pretrain"],
            *["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "w.safetensors")],
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "error: cannot use" in proc.stderr and "missing" in proc.stderr and "No such file" in proc.stderr


# every command that takes a path, given a missing one, a file where a folder belongs (or the reverse) and a folder
# without the expected contents: (arguments, a phrase its one-line error must hold); RUNS is a runs folder
# inside the temporary root, FILE a file, EMPTY an empty folder, NONE a path that does not exist
BAD_PATHS: list[tuple[list[str], str]] = [
    (["data", "--out", "FILE"], "is a file"),
    (["data", "--out", "FILE/data"], "is a file, not a folder"),
    (["pretrain", "--data", "NONE", "--out", "EMPTY/w.safetensors"], "No such file or directory"),
    (["pretrain", "--data", "FILE", "--out", "EMPTY/w.safetensors"], "Not a directory"),
    (["pretrain", "--data", "EMPTY", "--out", "EMPTY/w.safetensors"], "train/annotations.json"),
    (["pretrain", "--data", "EMPTY", "--out", "EMPTY"], "is a folder"),
    (["pretrain", "--data", "EMPTY", "--out", "FILE/w.safetensors"], "is a file, not a folder"),
    (["check-data", "--images", "NONE", "--annotations", "FILE"], "images folder not found"),
    (["check-data", "--images", "FILE", "--annotations", "FILE"], "images folder not found"),
    (["check-data", "--images", "EMPTY", "--annotations", "EMPTY"], "annotation file not found"),
    (["eval", "--run", "NONE"], "is not a run folder"),
    (["eval", "--run", "FILE"], "is not a run folder"),
    (["eval", "--run", "EMPTY"], "is not a run folder"),
    (["eval", "--gt", "NONE", "--detections", "FILE"], "not found"),
    (["eval", "--gt", "EMPTY", "--detections", "FILE"], "not found"),
    (["train", "--config", "NONE", "--out", "EMPTY/run"], "config file not found"),
    (["train", "--config", "EMPTY", "--out", "EMPTY/run"], "config file not found"),
    (["train", "--config", "FILE", "--out", "FILE"], "is a file"),
    (["predict", "--run", "NONE", "FILE"], "is not a run folder"),
    (["predict", "--run", "EMPTY", "FILE"], "is not a run folder"),
    (["predict", "--run", "EMPTY", "FILE", "--out", "FILE"], "is a file"),
    (["export", "--run", "EMPTY", "--onnx", "EMPTY/x.onnx"], "is not a run folder"),
    (["export", "--run", "EMPTY", "--onnx", "FILE/x.onnx"], "is a file, not a folder"),
    (["report", "--teacher", "RUNS/none", "--baseline", "RUNS/none", "--out", "RUNS/reports/x"], "is not a run folder"),
    (
        ["report", "--teacher", "RUNS/file", "--baseline", "RUNS/empty", "--out", "RUNS/reports/x"],
        "is not a run folder",
    ),
    (
        ["report", "--teacher", "RUNS/empty", "--baseline", "RUNS/empty", "--out", "EMPTY/x"],
        "must be RUNS/reports/NAME",
    ),
    (["pipeline", "--preset", "quick", "--out", "FILE"], "is a file"),
    (["pipeline", "--preset-file", "NONE", "--out", "EMPTY"], "preset file not found"),
    (["pipeline", "--preset-file", "EMPTY", "--out", "EMPTY"], "is a folder"),
    (["pipeline", "--preset-file", "FILE", "--out", "EMPTY"], "is empty"),
    (["pipeline", "--preset", "quick", "--preset-file", "FILE"], "exactly one of --preset"),
    (["demo", "--runs", "FILE", "--no-app"], "is a file"),
    (["fit-units", "--teacher", "NONE"], "is not a finished run folder"),
    (["fit-units", "--teacher", "EMPTY"], "is not a finished run folder"),
    (["app", "--runs", "FILE"], "is a file, not a folder"),
]
CLI_DRIVER = """
import contextlib, io, json, sys
from drkd_viz.cli import main
results = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["drkd-viz", *args]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:  # what the test is there to catch
            code = f"raised {type(exc).__name__}"
            err.write(repr(exc))
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


def test_every_path_argument_gets_one_clear_error(tmp_path):
    """Each bad path of each command: a non-zero exit, no traceback, a line that names what is wrong."""
    (tmp_path / "FILE").write_text("")
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "RUNS" / "empty").mkdir(parents=True)
    (tmp_path / "RUNS" / "file").write_text("")

    def place(arg: str) -> str:
        head = arg.split("/", 1)[0]
        return str(tmp_path / arg) if head in {"FILE", "EMPTY", "NONE", "RUNS"} else arg

    cases = [[place(a) for a in args] for args, _ in BAD_PATHS]
    proc = subprocess.run(
        [sys.executable, "-c", CLI_DRIVER, json.dumps(cases)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    failures = []
    for (args, phrase), (code, err) in zip(BAD_PATHS, results, strict=True):
        if code in (0, None) or not isinstance(code, int) or "Traceback" in err or phrase not in err:
            failures.append(f"drkd-viz {' '.join(args)} -> exit {code!r}: {err.strip()[-300:]!r} (wanted {phrase!r})")
    assert not failures, "\n".join(failures)
