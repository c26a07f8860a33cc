"""A runs folder: the runs of one or more presets, their data and their reports; and the rule that whatever is
read from it stays inside it.

RUNS/
  data/<split>/                the embedded dataset the pipeline generated (images/, annotations.json)
  reports/<name>/              report.json, report.md and figures (a preset's, or one `drkd-viz report` wrote)
  teacher/, <method>-s<seed>/  run folders (drkd_viz.runs.folder), the demo's at the top
  study/…                      a preset with its own runs keeps them one folder down
  variants/…                   the ablation variants' runs
  pretrain/                    backbones pre-trained on the train split (<backbone>-<key>.safetensors)
  .stale/                      runs moved aside when their config changed
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drkd_viz.data.layout import split_files
from drkd_viz.errors import UserError
from drkd_viz.runs.folder import RunFolder

NOT_RUNS = ("data", "reports", "report", "variants", "pretrain", ".stale")  # entries of a runs folder that are not runs
REPORT_FILE = "report.json"
REPORT_MARKDOWN = "report.md"  # the same report for people (beside REPORT_FILE)


@dataclass(frozen=True)
class RunsRoot:
    """Where things live in a runs folder (see the module's docstring)."""

    path: Path

    @property
    def data(self) -> Path:
        return self.path / "data"

    def split_files(self, split: str) -> tuple[Path, Path]:
        """(images folder, annotation file) of a split of the embedded dataset the pipeline generated."""
        return split_files(self.data, split)

    @property
    def reports(self) -> Path:
        return self.path / "reports"

    def report_dir(self, name: str) -> Path:
        return self.reports / name

    def report_file(self, name: str) -> Path:
        return self.report_dir(name) / REPORT_FILE

    @property
    def variants(self) -> Path:
        return self.path / "variants"

    @property
    def pretrain(self) -> Path:
        """Pre-trained backbones the pipeline made, one file per (backbone, pre-training config, dataset)."""
        return self.path / "pretrain"

    def run(self, role: str, seed: int = 0, subfolder: str = "") -> Path:
        """A pipeline run: ``[subfolder/]teacher``, or ``[subfolder/]<role>-s<seed>`` for a student."""
        return self.path / subfolder / run_name(role, seed)


def run_name(role: str, seed: int = 0) -> str:
    """The pipeline's name of a run: ``teacher`` (one per preset), else ``<role>-s<seed>``."""
    return "teacher" if role == "teacher" else f"{role}-s{seed}"


def stale_place(folder: Path, stamp: str) -> Path:
    """Where a run whose config changed is moved before it is trained again (kept, not deleted)."""
    return folder.parent / ".stale" / f"{folder.name}-{stamp}"


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


def inside(root: str | os.PathLike, *parts: str | os.PathLike) -> Path:
    """``root / parts`` resolved (symbolic links followed), refused unless it lies inside ``root``: what the
    dashboard and the analyses read of a runs folder, whatever a report or a user names, stays in it."""
    root = Path(root).resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and not path.is_relative_to(root):
        raise UserError(f"refused to read {path}: the dashboard only reads inside its runs folder {root}")
    return path


def report_runs(root: str | os.PathLike, report: dict[str, Any]) -> dict[str, list[Path]]:
    """Model name -> its run folders (one per seed, in the report's seed order) as ``report`` lists them,
    each checked to lie inside ``root``."""
    return {name: [inside(root, rel) for rel in entry["runs"]] for name, entry in report["models"].items()}


def report_runs_of_seed(root: str | os.PathLike, report: dict[str, Any], seed: int) -> dict[str, Path]:
    """Model name -> the run folder ``report`` names for ``seed``. A model trained once (the teacher) is the
    same run for every seed; a model without that seed (an ablation run on fewer seeds) is left out."""
    found = {}
    for name, folders in report_runs(root, report).items():
        seeds = list(report["models"][name].get("seeds", []))
        if seed in seeds:
            found[name] = folders[seeds.index(seed)]
        elif len(folders) == 1 and name == "teacher":
            found[name] = folders[0]
    return found


def report_split_files(root: str | os.PathLike, report: dict[str, Any]) -> tuple[Path, Path]:
    """(images folder, annotation file) of the split ``report`` was measured on, checked to lie inside ``root``:
    the files it records (a report built with `drkd-viz report`), else the pipeline's ``RUNS/data/<split>/``."""
    data = report.get("data")
    if data:
        return inside(root, data["images"]), inside(root, data["annotations"])
    images, annotations = RunsRoot(Path(root).absolute()).split_files(report.get("split", "test"))
    return inside(root, images), inside(root, annotations)


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


# ---------------------------------------------------------------- reports


def _children(root: Path, *parts: str) -> list[Path]:
    """The folders directly in ``root/parts`` (hidden ones and the NOT_RUNS entries left out), each resolved
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
        if RunFolder(path).metrics.is_file():
            found.append(path)
        else:
            found += [p for p in _children(root, path.name) if RunFolder(p).metrics.is_file()]
    return found
