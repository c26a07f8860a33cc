"""The on-disk contract: run folders (:mod:`.folder`), runs folders and the reports in them (:mod:`.root`), and
the provenance every run and report records (:mod:`.provenance`). Other modules locate files through these."""

from drkd_viz.runs.folder import (
    EVAL_DETECTIONS,
    EVAL_METRICS,
    EXPORT_BUILDER,
    EXPORT_INFO,
    EXPORT_WEIGHTS,
    MetricsLog,
    RunFolder,
    now,
)
from drkd_viz.runs.provenance import environment_info, git_commit
from drkd_viz.runs.root import (
    NOT_RUNS,
    PRESET_FOLDERS,
    REPORT_FILE,
    RUNS_ENV,
    RunsRoot,
    default_runs,
    inside,
    report_runs,
    report_runs_of_seed,
    report_split_files,
    run_folders,
    run_name,
    runs_root,
    stale_place,
)

__all__ = [
    "EVAL_DETECTIONS",
    "EVAL_METRICS",
    "EXPORT_BUILDER",
    "EXPORT_INFO",
    "EXPORT_WEIGHTS",
    "NOT_RUNS",
    "PRESET_FOLDERS",
    "REPORT_FILE",
    "RUNS_ENV",
    "MetricsLog",
    "RunFolder",
    "RunsRoot",
    "default_runs",
    "environment_info",
    "git_commit",
    "inside",
    "now",
    "report_runs",
    "report_runs_of_seed",
    "report_split_files",
    "run_folders",
    "run_name",
    "runs_root",
    "stale_place",
]
