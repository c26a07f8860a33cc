"""Building runs from the dashboard: ``drkd-viz pipeline`` in a child process (one per runs folder), and how far
it has got, read from the run folders with the pipeline's own state reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drkd_viz.errors import UserError
from drkd_viz.runs import RunFolder, RunsRoot

BUILD_PRESETS = ("quick", "demo")  # what the app offers to build (study takes hours on a CPU: use the CLI)
BUILD_LOG = ".dashboard-build.log"


def _last_iteration(metrics: Path) -> int:
    """The iteration of the last complete line of a metrics.jsonl, read from its tail."""
    if not metrics.is_file():
        return 0
    with open(metrics, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 8192))
        lines = fh.read().splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["iter"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


@dataclass
class JobProgress:
    name: str
    iterations: int
    done: int  # iterations trained
    evaluated: bool
    state: str  # waiting | training | evaluating | finished


@dataclass
class BuildProgress:
    preset: str
    fraction: float  # 0 … 1
    stage: str  # one line for the progress bar
    jobs: list[JobProgress] = field(default_factory=list)
    report_written: bool = False


def _job_state(job: Any) -> tuple[int, bool]:
    """(iterations done, evaluated) of a planned pipeline job, from the pipeline's own state reader: a folder of
    another config counts as empty."""
    from drkd_viz.experiments.pipeline import job_state

    iterations = job.config.train.iterations
    state = job_state(job)
    if state == "finished":
        return iterations, True
    if state in ("new", "stale"):
        return 0, False
    return min(_last_iteration(RunFolder(job.folder).metrics), iterations), False


def build_progress(root: Path, preset: str, since: float = 0.0) -> BuildProgress:
    """How far ``drkd-viz pipeline --preset PRESET --out ROOT`` has got, read from the run folders:
    each job weighs its training iterations plus a quarter of them for its test evaluation (a rough
    share of its time on a CPU). ``since``: a report older than this does not count as written."""
    from drkd_viz.experiments.pipeline import PRESETS, plan

    jobs = plan(PRESETS[preset], root)
    report = RunsRoot(root).report_file(preset)
    report_written = report.is_file() and report.stat().st_mtime >= since
    progress, total, done = [], 0.0, 0.0
    stage = "generating the embedded dataset"
    data_ready = RunsRoot(root).split_files("test")[1].is_file()
    for job in jobs:
        iters = job.config.train.iterations
        trained, evaluated = _job_state(job)
        state = "finished" if evaluated else "evaluating" if trained >= iters else "training" if trained else "waiting"
        progress.append(JobProgress(job.name, iters, trained, evaluated, state))
        total += iters * 1.25
        done += trained + (iters * 0.25 if evaluated else 0.0)
    current = next((p for p in progress if p.state != "finished"), None)
    if data_ready:
        if current is None:
            stage = "done" if report_written else "measuring speed and writing the report"
        elif current.state == "evaluating":
            stage = f"evaluating {current.name} on the test split"
        else:
            stage = f"training {current.name}: iteration {current.done} of {current.iterations}"
    fraction = done / total if total else 0.0
    if current is None and not report_written:
        fraction = min(fraction, 0.99)
    return BuildProgress(preset, fraction, stage, progress, report_written)


@dataclass
class Build:
    root: Path
    preset: str
    process: subprocess.Popen
    log: Path
    started: float
    ended: float | None = None  # when the process was first seen to have exited

    def returncode(self) -> int | None:
        code = self.process.poll()
        if code is not None and self.ended is None:
            self.ended = time.time()
        return code

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


_BUILDS: dict[Path, Build] = {}  # one build per runs folder, for the server's lifetime
_BUILDS_LOCK = threading.Lock()


def current_build(root: Path) -> Build | None:
    return _BUILDS.get(Path(root).resolve())


def start_build(root: Path, preset: str) -> Build:
    """Start ``drkd-viz pipeline --preset PRESET --out ROOT`` in a child process (its output goes to
    ROOT/.dashboard-build.log); one build per runs folder at a time."""
    if preset not in BUILD_PRESETS:
        raise UserError(f"the dashboard builds the presets {BUILD_PRESETS}; got {preset!r}")
    root = Path(root).resolve()
    with _BUILDS_LOCK:
        running = _BUILDS.get(root)
        if running is not None and running.returncode() is None:
            raise UserError(f"a {running.preset!r} build is already running in {root}")
        root.mkdir(parents=True, exist_ok=True)
        log = root / BUILD_LOG
        with open(log, "w", encoding="utf-8") as fh:
            process = subprocess.Popen(
                [sys.executable, "-m", "drkd_viz.cli", "pipeline", "--preset", preset, "--out", str(root), "--quiet"],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        build = Build(root, preset, process, log, time.time())
        _BUILDS[root] = build
    return build


def conflicting_runs(root: Path, preset: str) -> list[str]:
    """Run folders that building ``preset`` into ``root`` would move to ROOT/.stale/ (another config)."""
    from drkd_viz.experiments.pipeline import PRESETS, job_state, plan

    return [job.name for job in plan(PRESETS[preset], root) if job_state(job) == "stale"]
