"""The run folder: everything a run produced, in one place the notebooks and dashboard read.

RUN/
  config.yaml          the fully resolved config (rerun with: drkd-viz train --config RUN/config.yaml)
  manifest.json        status, seed, device, versions, git commit, start/end/wall time, final metrics
  metrics.jsonl        one JSON line per iteration: every loss term, total, lr, iteration time, images/s
  tensorboard/         TensorBoard event files (tensorboard --logdir RUN/tensorboard)
  checkpoints/iter_*/  see drkd_viz.engine.checkpoint
  export/              student.safetensors (plain torchvision state dict) + student.json (how to build it)
  eval/<split>/        metrics.json (the keys of `drkd-viz eval`) + detections.json (COCO results)
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from drkd_viz.utils.io import atomic_write_json

# The runs folder when none is given, one rule for `pipeline`, `demo`, `app` and the notebooks: $DRKD_RUNS,
# else runs/<folder> below the working directory. The study keeps its runs inside the demo's folder
# (RUNS/study/) because it reuses the demo's data and teacher, so both presets default to runs/demo.
RUNS_ENV = "DRKD_RUNS"
PRESET_FOLDERS = {"quick": "quick", "demo": "demo", "study": "demo"}


def default_runs(preset: str = "demo", base: str | os.PathLike | None = None) -> Path:
    """The runs folder of ``preset`` when the user names none: ``$DRKD_RUNS``, else ``base/runs/<folder>``
    (``base``: the working directory)."""
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV]).expanduser()
    return Path(base or ".") / "runs" / PRESET_FOLDERS.get(preset, preset)


PACKAGES = ("drkd_viz", "torch", "torchvision", "numpy", "pillow", "pycocotools", "faster-coco-eval", "safetensors")


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.path / "manifest.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def export(self) -> Path:
        return self.path / "export"

    def eval_dir(self, split: str) -> Path:
        return self.path / "eval" / split

    def read_manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest.read_text()) if self.manifest.is_file() else {}

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        manifest = {**self.read_manifest(), **fields}
        atomic_write_json(self.manifest, manifest)
        return manifest

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]


def git_commit() -> dict[str, Any]:
    """The commit of the drkd_viz source tree this run used, and whether it had local changes."""
    source = Path(__file__).resolve().parents[2]
    if not (source / "pyproject.toml").is_file():  # an installed wheel: its folder may sit in anyone's repository
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return {"commit": commit or None, "dirty": bool(dirty)} if commit else {"commit": None, "dirty": None}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment_info() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "git": git_commit(),
    }


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class MetricsLog:
    """Per-iteration metrics as JSON lines (flushed each line) and TensorBoard scalars.

    On resume, lines after the resumed iteration (written by the interrupted process) are dropped
    and TensorBoard purges its later events, so a resumed run's logs equal an uninterrupted run's."""

    def __init__(self, run: RunFolder, resume_from: int | None, tensorboard: bool = True):
        self.path = run.metrics
        if resume_from is not None and self.path.is_file():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["iter"] <= resume_from
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif resume_from is None:
            self.path.write_text("")
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115  (closed in close())
        self._tb = None
        # TensorBoard files are an extra (pip install 'drkd_viz[tensorboard]'); metrics.jsonl is always written
        if tensorboard and importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run.tensorboard), purge_step=(resume_from + 1) if resume_from else None)

    def log(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if self._tb is not None:
            step = record["iter"]
            for key, value in record.items():
                if key != "iter" and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"train/{key}", value, step)

    def log_eval(self, split: str, metrics: dict[str, float], step: int) -> None:
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()
