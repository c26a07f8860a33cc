"""A report from any finished run folders: a teacher you trained yourself, COCO runs, runs kept in different
folders. It has the pipeline's format, so the dashboard and the notebooks show it, model pages included.

    drkd-viz report --teacher RUNS/mine/teacher --baseline RUNS/a/student-s0 --student drkd=RUNS/b/drkd-s0 \\
        --split test --out RUNS/reports/mine

- The report lives in ``RUNS/reports/NAME/``. Every run, and the split's images and annotations for the pages
  that draw images, must lie inside ``RUNS``, because the dashboard reads only inside its runs folder.
- The teacher and the students must share the detector family, the input size and the evaluated split.
- A run not yet evaluated on the split is evaluated first (``RUN/eval/<split>/``).
- Seeds come from each run's config. A student's seeds are paired with the baseline's, so each needs a baseline
  run of the same seed.
- The relation pages inspect every model through the units of the student named ``drkd``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from drkd_viz.engine.config import RunConfig
from drkd_viz.engine.data import open_split
from drkd_viz.engine.inference import evaluate_run, read_run_config
from drkd_viz.errors import UserError
from drkd_viz.experiments.relation_report import relation_section
from drkd_viz.experiments.report import COST_IMAGES, collect, error_section, model_costs, save_report
from drkd_viz.runs import RunFolder, RunsRoot, environment_info
from drkd_viz.runs.reports import PLAIN_NAME, Report  # model and report names become folder names and table rows

RESERVED = ("teacher", "baseline")


@dataclass(frozen=True)
class NamedRun:
    """A finished run as a report sees it: which model it is, its seed, its folder and config."""

    method: str  # teacher | baseline | the student's name
    folder: Path
    seed: int
    config: RunConfig


def parse_student(spec: str) -> tuple[str, Path]:
    """``NAME=RUN`` -> (NAME, RUN)."""
    name, sep, folder = spec.partition("=")
    if not sep or not name or not folder:
        raise UserError(f"--student takes NAME=RUN (for instance drkd=runs/demo/drkd-s0), got {spec!r}")
    return name, Path(folder)


def _check_name(name: str, what: str) -> None:
    if not PLAIN_NAME.match(name):
        raise UserError(f"{what} {name!r} must be letters, digits and underscores (it names a folder and a table row)")


def _open(method: str, folder: Path, root: Path) -> NamedRun:

    path = Path(folder).resolve()
    if not path.is_relative_to(root):
        raise UserError(
            f"the {method} run {folder} lies outside the runs folder {root} (the folder above reports/): the "
            "dashboard reads only inside it. Write the report into the runs folder that holds the runs "
            f"(--out THAT_FOLDER/reports/NAME), or move the runs into {root}"
        )
    cfg = read_run_config(path)
    return NamedRun(method, path, int(cfg.seed), cfg)


def _split_files(run: NamedRun, split: str) -> tuple[Path, Path]:
    images, annotations = run.config.data.split_paths(split)
    return images.resolve(), annotations.resolve()


def _check_compatible(runs: list[NamedRun], split: str) -> None:
    teacher = runs[0]
    model = teacher.config.model
    wanted = (model.family, model.min_size, model.max_size)
    split_files = _split_files(teacher, split)
    for run in runs[1:]:
        other = run.config.model
        if (other.family, other.min_size, other.max_size) != wanted:
            raise UserError(
                f"the {run.method} run {run.folder} is a {other.family} at input size {other.min_size}-"
                f"{other.max_size} px, the teacher a {model.family} at {model.min_size}-{model.max_size} px: a report "
                "compares models of one family and input size"
            )
        if _split_files(run, split) != split_files:
            raise UserError(
                f"the {run.method} run {run.folder} evaluates {split} on {_split_files(run, split)[1]}, the teacher "
                f"on {split_files[1]}: a report compares models on one split"
            )
    seen: dict[tuple[str, int], Path] = {}
    for run in runs:
        key = (run.method, run.seed)
        if key in seen:
            raise UserError(
                f"{run.method} has two runs of seed {run.seed} ({seen[key]} and {run.folder}): give one run per seed"
            )
        seen[key] = run.folder
    baseline_seeds = sorted(r.seed for r in runs if r.method == "baseline")
    for run in runs:
        if run.method not in RESERVED and run.seed not in baseline_seeds:
            raise UserError(
                f"the {run.method} run {run.folder} has seed {run.seed}, and the baseline runs have seeds "
                f"{baseline_seeds}: gains are paired by seed, so give a baseline run of seed {run.seed}"
            )


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def report_from_runs(
    teacher: str | os.PathLike,
    baselines: Sequence[str | os.PathLike],
    students: Sequence[tuple[str, str | os.PathLike]],
    out: str | os.PathLike,
    split: str = "test",
    timed: bool = True,
    progress: bool = True,
) -> Report:
    """Evaluate what is missing, then write ``out/report.{json,md}`` and its figures; returns the report dict.
    ``out`` is ``RUNS/reports/NAME``; see the module's docstring for what the runs must share."""

    started = time.time()
    out = Path(out).resolve()
    if out.parent != RunsRoot(out.parent.parent).reports:
        raise UserError(f"--out must be RUNS/reports/NAME (the dashboard on RUNS lists RUNS/reports/*), got {out}")
    root, name = out.parent.parent, out.name
    _check_name(name, "the report's name")
    if not baselines:
        raise UserError("give at least one --baseline run: every gain is measured against it")
    for student, _ in students:
        _check_name(student, "the student's name")
        if student in RESERVED:
            raise UserError(f"a student cannot be named {student!r}; pass that run with --{student}")
    specs = [("teacher", teacher), *(("baseline", b) for b in baselines), *students]
    runs = [_open(method, Path(folder), root) for method, folder in specs]
    _check_compatible(runs, split)

    for run in runs:
        if not RunFolder(run.folder).is_evaluated(split):
            evaluate_run(run.folder, split=split, progress=progress)
    images_dir, annotations = _split_files(runs[0], split)
    data = {"images": _relative(images_dir, root), "annotations": _relative(annotations, root)}
    if not annotations.is_relative_to(root) and progress:
        print(
            f"note: the {split} split ({annotations}) lies outside {root}; the dashboard's pages that draw images "
            "read only inside the runs folder, so they will say so (the tables and charts work)"
        )

    teacher_run = runs[0]
    first_baseline = next(r for r in runs if r.method == "baseline")
    dataset = open_split(teacher_run.config.data, split, train=False)
    sample = [dataset[i][0] for i in range(min(COST_IMAGES, len(dataset)))]
    costs = model_costs({"teacher": teacher_run.folder, "student": first_baseline.folder}, sample, timed=timed)
    report: Report = {
        "preset": name,
        "dataset": _relative(annotations, root),
        "family": teacher_run.config.model.family,
        "seeds": sorted({r.seed for r in runs if r.method == "baseline"}),
        "notes": "built with drkd-viz report from the runs named below",
        "split": split,
        "data": data,
        "wall_seconds": 0.0,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "provenance": {
            **environment_info(),
            "runs": {
                _relative(r.folder, root): {
                    "config_key": RunFolder(r.folder).marked_key(),
                    "status": RunFolder(r.folder).read_manifest().get("status"),
                }
                for r in runs
            },
        },
        "models": collect(runs, root, split),
        "costs": costs,
        "errors": error_section(runs, annotations, split),
        "relations": relation_section(runs, dataset, teacher_run.config.model.levels[:2], progress=progress),
    }
    report["wall_seconds"] = time.time() - started
    save_report(out, report)
    return report
