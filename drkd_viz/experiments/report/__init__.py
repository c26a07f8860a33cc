"""The experiments report: every number comes from the runs' stored test-split evaluations.

RUNS/reports/PRESET/report.json   all numbers (per run and summarised over seeds)
RUNS/reports/PRESET/report.md     the tables a person reads
RUNS/reports/PRESET/*.png         AP by size with 95 % intervals, per-class AP, speed vs accuracy

``collect``: the numbers (metrics over seeds, gains, costs, the bar, the error breakdown, the val record);
``markdown``: report.md; ``figures``: the PNGs; ``write``: a whole report from the pipeline's jobs, and saving one.
"""

from __future__ import annotations

from drkd_viz.experiments.report.collect import (
    COST_IMAGES,
    COST_ROUNDS,
    ORDER,
    REPORTED,
    SPEED_KEYS,
    collect,
    error_section,
    model_costs,
    read_val_record,
    scientific_bar,
    speed_ratio,
)
from drkd_viz.experiments.report.figures import figures
from drkd_viz.experiments.report.markdown import error_lines, markdown, val_appendix, wall_time_sentence
from drkd_viz.experiments.report.write import save_report, write_report

__all__ = [
    "COST_IMAGES",
    "COST_ROUNDS",
    "ORDER",
    "REPORTED",
    "SPEED_KEYS",
    "collect",
    "error_lines",
    "error_section",
    "figures",
    "markdown",
    "model_costs",
    "read_val_record",
    "save_report",
    "scientific_bar",
    "speed_ratio",
    "val_appendix",
    "wall_time_sentence",
    "write_report",
]
