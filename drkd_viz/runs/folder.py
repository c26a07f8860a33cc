"""One run folder: everything a run produced, in one place the notebooks and the dashboard read.

RUN/
  config.yaml          the fully resolved config (rerun with: drkd-viz train --config RUN/config.yaml)
  manifest.json        status, seed, device, versions, git commit, start/end/wall time, final metrics
  metrics.jsonl        one JSON line per iteration: every loss term, total, lr, iteration time, images/s
  tensorboard/         TensorBoard event files (tensorboard --logdir RUN/tensorboard)
  checkpoints/iter_*/  see drkd_viz.engine.checkpoint
  export/              student.safetensors (plain torchvision state dict) + student.json (how to build it)
  eval/<split>/        metrics.json (the keys of `drkd-viz eval`) + detections.json (COCO results)
  pipeline.json        written by `drkd-viz pipeline`: the config key the run was trained for
"""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drkd_viz.utils.io import atomic_write_json

# The export (RUN/export/, or any folder `drkd-viz export` writes): a plain torchvision state dict, how to build
# the detector, and a torchvision-only script that builds it
EXPORT_WEIGHTS = "student.safetensors"
EXPORT_INFO = "student.json"
EXPORT_BUILDER = "build_student.py"
# An evaluation (RUN/eval/<split>/, or any folder `drkd-viz eval` writes): its metrics and the detections behind them
EVAL_METRICS = "metrics.json"
EVAL_DETECTIONS = "detections.json"


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

    @property
    def export_weights(self) -> Path:
        return self.export / EXPORT_WEIGHTS

    @property
    def export_info(self) -> Path:
        return self.export / EXPORT_INFO

    @property
    def export_builder(self) -> Path:
        return self.export / EXPORT_BUILDER

    @property
    def pipeline_marker(self) -> Path:
        return self.path / "pipeline.json"

    def exists(self) -> bool:
        """A run folder is one with a config (a run that started; it may be unfinished)."""
        return self.config.is_file()

    def eval_dir(self, split: str) -> Path:
        return self.path / "eval" / split

    def eval_metrics(self, split: str) -> Path:
        return self.eval_dir(split) / EVAL_METRICS

    def eval_detections(self, split: str) -> Path:
        return self.eval_dir(split) / EVAL_DETECTIONS

    def is_evaluated(self, split: str) -> bool:
        return self.eval_metrics(split).is_file()

    def read_eval_metrics(self, split: str) -> dict[str, Any]:
        return json.loads(self.eval_metrics(split).read_text())

    @property
    def bulk(self) -> tuple[Path, ...]:
        """What a copy of the run for its model alone can leave out: checkpoints, evaluations, TensorBoard."""
        return self.checkpoints, self.path / "eval", self.tensorboard

    def read_manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest.read_text()) if self.manifest.is_file() else {}

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        manifest = {**self.read_manifest(), **fields}
        atomic_write_json(self.manifest, manifest)
        return manifest

    def mark(self, config_key: str, method: str, seed: int) -> None:
        """Record which config the run is trained for (the pipeline's cache key): a run whose key changed is
        stale, and its folder is moved aside before it is trained again."""
        atomic_write_json(self.pipeline_marker, {"config_key": config_key, "method": method, "seed": seed})

    def marked_key(self) -> str | None:
        """The config key the run was trained for (its marker); None when absent or unreadable."""
        try:
            return (
                json.loads(self.pipeline_marker.read_text()).get("config_key")
                if self.pipeline_marker.is_file()
                else None
            )
        except json.JSONDecodeError:
            return None

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]


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
