"""Writing a report: run the pipeline's jobs through every section and save report.json, report.md and the
figures into the report folder."""

from __future__ import annotations

import time
from pathlib import Path

from drkd_viz.engine.data import open_split
from drkd_viz.experiments.relation_report import relation_section
from drkd_viz.experiments.report.collect import (
    COST_IMAGES,
    collect,
    error_section,
    model_costs,
    read_val_record,
    scientific_bar,
)
from drkd_viz.experiments.report.figures import figures
from drkd_viz.experiments.report.markdown import markdown
from drkd_viz.resources import configs_dir
from drkd_viz.runs import RunsRoot, environment_info
from drkd_viz.runs.reports import Report
from drkd_viz.runs.root import REPORT_FILE, REPORT_MARKDOWN
from drkd_viz.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text


def write_report(preset, jobs: list, runs: Path, wall_seconds: float) -> Report:
    folder = RunsRoot(runs).report_dir(preset.name)
    models = collect(jobs, runs)
    teacher = next(j for j in jobs if j.method == "teacher")
    student = next(j for j in jobs if j.kind == "student")
    test = open_split(teacher.config.data, "test", train=False)
    images = [test[i][0] for i in range(min(COST_IMAGES, len(test)))]
    report: Report = {
        "preset": preset.name,
        "dataset": preset.dataset,
        "family": preset.family,
        "seeds": list(preset.seeds),
        "notes": preset.notes,
        "split": "test",
        "wall_seconds": wall_seconds,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "provenance": {
            **environment_info(),
            # by folder inside the runs folder (a study keeps its runs in RUNS/study/)
            "runs": {j.folder.relative_to(runs).as_posix(): {"config_key": j.key, "status": j.status} for j in jobs},
        },
        "models": models,
        "costs": model_costs({"teacher": teacher.folder, "student": student.folder}, images),
    }
    report["relations"] = relation_section(jobs, test, teacher.config.model.levels[:2])
    report["scientific_bar"] = scientific_bar(report["models"], report["costs"], report["relations"])
    report["errors"] = error_section(jobs, RunsRoot(runs).split_files("test")[1], "test")
    if preset.val_record:
        report["val_variants"] = read_val_record(configs_dir() / preset.val_record)
    save_report(folder, report)
    return report


def save_report(folder: Path, report: Report) -> None:
    """``folder/report.json``, its Markdown twin and its figures, each written atomically."""
    atomic_write_json(folder / REPORT_FILE, report)
    atomic_write_text(folder / REPORT_MARKDOWN, markdown(report))
    for name, data in figures(report).items():
        atomic_write_bytes(folder / name, data)
