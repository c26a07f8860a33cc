"""The dashboard's non-UI side: where its runs folder is, what the folder holds, safe paths inside it,
progress of a pipeline build started from the app, and the ``streamlit run`` command that serves it.

Nothing here imports Streamlit: the app (``app/``) calls these functions and draws the results.

Safety rules the app relies on:
- the runs folder is fixed when the server starts (``DRKD_RUNS``, set by ``drkd-viz app --runs``);
  the browser never names a path, and every path built from the report or a listing is resolved and
  checked to lie inside the runs folder (:func:`inside`);
- uploads are limited in bytes and pixels and decoded by :func:`drkd_viz.data.images.load_image`;
- the server listens on 127.0.0.1 unless asked otherwise, without file watcher or usage statistics.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drkd_viz.engine.runs import RUNS_ENV, default_runs
from drkd_viz.errors import UserError
from drkd_viz.resources import app_entry

if TYPE_CHECKING:  # pandas and torch are imported where used: the CLI's `app` command needs neither
    import pandas as pd
    import torch

APP_ENTRY = app_entry()  # the repository's app/Home.py, or the copy inside an installed wheel
BUILD_PRESETS = ("quick", "demo")  # what the app offers to build (study takes hours on a CPU: use the CLI)
BUILD_LOG = ".dashboard-build.log"

# Uploaded images: small enough to decode and run three detectors on in about a second on a CPU.
UPLOAD_MAX_MB = 8
UPLOAD_MAX_BYTES = UPLOAD_MAX_MB * 1024 * 1024
UPLOAD_MAX_PIXELS = 4_000_000
UPLOAD_TYPES = ("png", "jpg", "jpeg", "bmp", "webp")
UPLOAD_MAX_SIDE = 800  # longer side after decoding: the detectors resize far below this anyway

# Distillation terms the distiller adds to the detector's own losses (drkd_viz/distill/distiller.py).
DISTILL_TERMS = ("loss_pr", "loss_ir", "loss_ins", "loss_fi", "loss_pkd")
# Entries of a runs folder that are not run folders.
NOT_RUNS = ("data", "reports", "report", "variants", ".stale")


# ---------------------------------------------------------------- the runs folder and paths in it
def runs_root(value: str | os.PathLike | None = None, argv: list[str] | None = None) -> Path:
    """The runs folder: ``value``, else ``--runs DIR`` in ``argv`` (``streamlit run app/Home.py -- --runs
    DIR``), else :func:`default_runs` ($DRKD_RUNS, else runs/demo); resolved. It
    need not exist yet (the app offers to build it)."""
    if value is None and argv and "--runs" in argv[:-1]:
        value = argv[argv.index("--runs") + 1]
    raw = value if value is not None else default_runs()
    root = Path(raw).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise UserError(f"the runs folder {root} is a file, not a folder; give a folder with --runs")
    return root


def inside(root: Path, *parts: str | os.PathLike) -> Path:
    """``root / parts`` resolved (symbolic links followed), refused unless it lies inside ``root``."""
    root = Path(root).resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and not path.is_relative_to(root):
        raise UserError(f"refused to read {path}: the dashboard only reads inside its runs folder {root}")
    return path


# ---------------------------------------------------------------- reports
@dataclass(frozen=True)
class ReportInfo:
    preset: str
    path: Path  # RUNS/reports/<preset>/report.json
    created: str  # as the report states it
    mtime: float


def list_reports(root: Path) -> list[ReportInfo]:
    """Every ``RUNS/reports/<preset>/report.json``, newest first."""
    folder = root / "reports"
    if not folder.is_dir():
        return []
    found = []
    for sub in folder.iterdir():
        try:
            path = inside(root, "reports", sub.name, "report.json")
        except UserError:
            continue  # a link pointing out of the runs folder is not followed
        if path.is_file():
            try:
                created = str(json.loads(path.read_text()).get("created", ""))
            except (OSError, json.JSONDecodeError):
                continue  # being written right now, or not a report
            found.append(ReportInfo(sub.name, path, created, path.stat().st_mtime))
    return sorted(found, key=lambda r: r.mtime, reverse=True)


def default_report(reports: list[ReportInfo]) -> str | None:
    """``demo`` when there is one (the embedded default), else the newest."""
    names = [r.preset for r in reports]
    if "demo" in names:
        return "demo"
    return names[0] if names else None


def read_report(root: Path, preset: str) -> dict[str, Any]:
    path = inside(root, "reports", preset, "report.json")
    if not path.is_file():
        raise UserError(f"no report for preset {preset!r} in {root}: build it with drkd-viz pipeline --preset {preset}")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); rebuild it with drkd-viz pipeline") from None
    return check_report(root, report)


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def check_report(root: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Refuse a report whose model names are not plain names (they become run-folder names) or whose runs
    lie outside the runs folder; returns the report."""
    for name in report.get("models", {}):
        if not _PLAIN_NAME.match(name):
            raise UserError(f"the report names a model {name!r}; model names are letters, digits and underscores")
    report_run_dirs(root, report)
    for name in report.get("provenance", {}).get("runs", {}):
        inside(root, name)
    return report


def report_run_dirs(root: Path, report: dict[str, Any]) -> dict[str, list[Path]]:
    """Model name -> its run folders (one per seed) as the report lists them, checked to be inside ``root``."""
    return {name: [inside(root, rel) for rel in entry["runs"]] for name, entry in report["models"].items()}


def replaced_runs(root: Path, report: dict[str, Any]) -> list[str]:
    """Runs of the report whose folder now holds a run of another config (another preset built into the
    same folder since), or is gone: the report's numbers no longer describe what is on disk."""
    changed = []
    for name, info in report.get("provenance", {}).get("runs", {}).items():
        from drkd_viz.experiments.pipeline import recorded_key

        inside(root, name, "pipeline.json")  # refuses a marker that links outside the runs folder
        if recorded_key(inside(root, name)) != info.get("config_key"):
            changed.append(name)
    return changed


def _num(value: float | None, scale: float = 100.0) -> float:
    return math.nan if value is None else value * scale


def leaderboard(report: dict[str, Any], gain_keys: tuple[str, ...] = ("AP", "APs")) -> pd.DataFrame:
    """One row per model of the report: AP … AP_L (percent, mean over seeds) with 95 % intervals,
    gains over the baseline (for ``gain_keys``), gap closed, parameters and CPU speed. A pandas DataFrame."""
    import pandas as pd

    rows = []
    costs = report.get("costs", {})
    for name, entry in report["models"].items():
        row: dict[str, Any] = {"model": name, "seeds": len(entry["seeds"])}
        for key, summary in entry["summary"].items():
            row[key] = _num(summary["mean"])
            if key in ("AP", "APs", "APm", "APl"):
                low, high = summary["ci95"]
                row[f"{key} CI low"], row[f"{key} CI high"] = _num(low), _num(high)
        gain = entry.get("gain_over_baseline", {})
        for key in gain_keys:
            row[f"Δ{key}"] = _num(gain[key]["mean"]) if key in gain else math.nan
            row[f"Δ{key} CI low"] = _num(gain[key]["ci95"][0]) if key in gain else math.nan
            row[f"Δ{key} CI high"] = _num(gain[key]["ci95"][1]) if key in gain else math.nan
            closed = entry.get("gap_closed", {}).get(key)
            row[f"gap closed {key} (%)"] = _num(closed)
        cost = costs.get("teacher" if name == "teacher" else "student", {})
        row["parameters (M)"] = cost.get("parameters", math.nan) / 1e6
        row["GFLOPs / image"] = cost.get("gflops_per_image", math.nan)
        row["CPU images / s"] = cost.get("cpu_images_per_s", math.nan)
        row["CPU images / s, 1 thread"] = cost.get("cpu_images_per_s_1thread", math.nan)
        # the paired per-image median (reports before it lack the figure)
        row["CPU speed-up vs teacher"] = 1.0 if name == "teacher" else cost.get("speedup", math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def provenance(report: dict[str, Any]) -> dict[str, str]:
    from drkd_viz.experiments.report import training_seconds

    git = report.get("provenance", {}).get("git", {})
    commit = git.get("commit") or "unknown"
    return {
        "preset": report["preset"],
        "dataset": f"embedded `{report['dataset']}`, {report.get('split', 'test')} split",
        "detector family": report["family"],
        "seeds": ", ".join(str(s) for s in report["seeds"]),
        "commit": commit[:12] + (" (with local changes)" if git.get("dirty") else ""),
        "created": report.get("created", ""),
        "pipeline wall time": f"{report.get('wall_seconds', 0) / 60:.1f} min",
        "training time of its runs": f"{training_seconds(report) / 60:.1f} min",
    }


# ---------------------------------------------------------------- uploads
def decode_upload(data: bytes, name: str = "uploaded image") -> torch.Tensor:
    """An uploaded image as a 3 x H x W float tensor in [0, 1]: refused above ``UPLOAD_MAX_BYTES`` or
    ``UPLOAD_MAX_PIXELS`` (checked from the header, before decoding), converted to 8-bit RGB, and
    downscaled so its longer side is at most ``UPLOAD_MAX_SIDE``."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    from drkd_viz.data.images import load_image
    from drkd_viz.errors import DatasetError

    if len(data) > UPLOAD_MAX_BYTES:
        raise DatasetError(f"{name} is {len(data) / 2**20:.1f} MB; the dashboard accepts at most {UPLOAD_MAX_MB} MB")
    if not data:
        raise DatasetError(f"{name} is empty")
    image = load_image(bytes(data), max_pixels=UPLOAD_MAX_PIXELS, name=name)
    scale = UPLOAD_MAX_SIDE / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    return TF.to_tensor(image)


def ablation_settings(name: str) -> str:
    """What an ablation changes relative to DRKD, in words (from drkd_viz.distill.config.ABLATIONS)."""
    from drkd_viz.distill.config import ABLATIONS

    if name not in ABLATIONS:
        return {
            "teacher": "the teacher",
            "baseline": "no distillation",
            "feature_imitation": "FPN feature imitation",
            "pkd": "PKD: Pearson-correlation feature imitation",
        }.get(name, "")
    changes = ABLATIONS[name]
    return "DRKD as configured" if not changes else ", ".join(f"{k} = {v}" for k, v in changes.items())


# ---------------------------------------------------------------- run folders and training curves
def _children(root: Path, *parts: str) -> list[Path]:
    """The folders directly in ``root/parts`` (hidden ones and data/reports/variants left out), each resolved
    and confined to ``root`` (a link out of it is skipped)."""
    found = []
    for sub in sorted(root.joinpath(*parts).iterdir()):
        if sub.name in NOT_RUNS or sub.name.startswith("."):
            continue
        try:
            path = inside(root, *parts, sub.name)
        except UserError:
            continue
        if path.is_dir():
            found.append(path)
    return found


def run_folders(root: Path) -> list[Path]:
    """Run folders of the runs folder (those with a metrics.jsonl), by name, and those one folder down
    (a preset with its own schedules keeps its runs in a subfolder, e.g. ``study/teacher``)."""
    if not root.is_dir():
        return []
    found = []
    for path in _children(root):
        if (path / "metrics.jsonl").is_file():
            found.append(path)
        else:
            found += [p for p in _children(root, path.name) if (p / "metrics.jsonl").is_file()]
    return found


def read_metrics(run: Path) -> pd.DataFrame:
    """A run's metrics.jsonl as a DataFrame indexed by iteration (a partly written last line is skipped)."""
    import pandas as pd

    records = []
    with open(run / "metrics.jsonl", encoding="utf-8") as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    frame = pd.DataFrame(records)
    return frame.set_index("iter") if "iter" in frame else frame


def detection_loss(frame: pd.DataFrame) -> pd.Series:
    """The detector's own loss (sum of its ``loss_*`` terms other than distillation terms)."""
    terms = [c for c in frame.columns if c.startswith("loss_") and c not in DISTILL_TERMS]
    return frame[terms].sum(axis=1)


def run_summary(run: Path, name: str | None = None) -> dict[str, Any]:
    """One row of the Runs page's table; ``name`` labels the run (default: its folder name)."""
    manifest = json.loads((run / "manifest.json").read_text()) if (run / "manifest.json").is_file() else {}
    val = (manifest.get("metrics") or {}).get("val", {})
    return {
        "run": name or run.name,
        "status": manifest.get("status", "unknown"),
        "formula": manifest.get("formula", ""),
        "wall time (s)": manifest.get("wall_seconds"),
        "val AP (%)": _num(val.get("AP")),
        "val AP_S (%)": _num(val.get("APs")),
    }


# ---------------------------------------------------------------- building runs from the app
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
    """(iterations done, evaluated) of a planned pipeline job, counting a folder of another config as empty."""
    from drkd_viz.experiments.pipeline import recorded_key

    if recorded_key(job.folder) != job.key:
        return 0, False
    evaluated = (job.folder / "eval" / "test" / "metrics.json").is_file()
    if evaluated:
        return job.config.train.iterations, True
    return min(_last_iteration(job.folder / "metrics.jsonl"), job.config.train.iterations), False


def build_progress(root: Path, preset: str, since: float = 0.0) -> BuildProgress:
    """How far ``drkd-viz pipeline --preset PRESET --out ROOT`` has got, read from the run folders:
    each job weighs its training iterations plus a quarter of them for its test evaluation (a rough
    share of its time on a CPU). ``since``: a report older than this does not count as written."""
    from drkd_viz.experiments.pipeline import PRESETS, plan

    jobs = plan(PRESETS[preset], root)
    report = root / "reports" / preset / "report.json"
    report_written = report.is_file() and report.stat().st_mtime >= since
    progress, total, done = [], 0.0, 0.0
    stage = "generating the embedded dataset"
    data_ready = (root / "data" / "test" / "annotations.json").is_file()
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
    from drkd_viz.experiments.pipeline import PRESETS, plan, recorded_key

    return [
        job.name for job in plan(PRESETS[preset], root) if job.folder.exists() and recorded_key(job.folder) != job.key
    ]


# ---------------------------------------------------------------- serving
def streamlit_command(
    host: str = "127.0.0.1", port: int = 8501, entry: Path = APP_ENTRY, headless: bool = True
) -> list[str]:
    """``python -m streamlit run`` with the flags the dashboard needs whatever config files say:
    the given address (127.0.0.1 by default), no file watcher (it trips over torch), no usage
    statistics, the upload limit, no browser opened when ``headless``. The runs folder travels in
    the environment (:func:`app_environment`)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(entry),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true" if headless else "false",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--server.maxUploadSize",
        str(UPLOAD_MAX_MB),
    ]


def check_entry(entry: Path = APP_ENTRY) -> Path:
    if not entry.is_file():
        raise UserError(
            f"the dashboard's entry file {entry} is missing: reinstall drkd_viz (a wheel carries it as "
            "drkd_viz/app, a checkout as app/)"
        )
    return entry


def exec_server(runs: Path, host: str = "127.0.0.1", port: int = 8501, headless: bool = True) -> None:
    """Replace this process by the dashboard's server on ``runs``: signals (Ctrl+C, a test's terminate)
    then reach Streamlit itself. Never returns."""
    command = streamlit_command(host=host, port=port, headless=headless)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, app_environment(runs))


def app_environment(runs: Path) -> dict[str, str]:
    return {**os.environ, RUNS_ENV: str(runs)}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextmanager
def serve(runs: Path, port: int | None = None, log: Path | None = None, timeout: float = 120.0) -> Iterator[str]:
    """Run ``drkd-viz app --runs RUNS`` on 127.0.0.1 (a free port unless given) until the block ends;
    yields the URL once the server answers its health check. For tests and benchmarks."""
    port = port or free_port()
    command = [sys.executable, "-m", "drkd_viz.cli", "app", "--runs", str(runs), "--port", str(port)]
    out = open(log, "w", encoding="utf-8") if log else subprocess.DEVNULL  # noqa: SIM115  (closed below)
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log else ""
                raise UserError(f"the dashboard server exited with code {process.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise UserError(f"the dashboard server did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if log:
            out.close()
