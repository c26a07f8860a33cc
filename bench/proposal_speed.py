"""What fewer test-time proposals buy: the student's speed-up over the teacher against its val AP.

    python bench/proposal_speed.py --runs runs/demo [--run baseline-s0] [--proposals 150,100,50]

Copies the student run (config and weights, without checkpoints) once per proposal count, with
``rpn_post_nms_top_n_test`` set to the count and ``rpn_pre_nms_top_n_test`` to twice it, then times every
copy against the teacher with the report's paired timing (experiments/report/collect.py ``model_costs``: each
image through every model back to back, median of per-image ratios) and evaluates each copy on **val**. Nothing is
retrained: the proposal count is a test-time setting. The README quotes one run of it (the 2x speed target).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drkd_viz.engine.config import load_config  # noqa: E402
from drkd_viz.engine.data import open_split  # noqa: E402
from drkd_viz.engine.inference import evaluate_run  # noqa: E402
from drkd_viz.experiments.report import COST_IMAGES, model_costs  # noqa: E402
from drkd_viz.runs import RunFolder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/demo"))
    parser.add_argument("--run", default="baseline-s0", help="the student run inside --runs")
    parser.add_argument("--proposals", default="150,100,50", help="comma-separated test-time proposal counts")
    args = parser.parse_args()
    teacher, student = args.runs / "teacher", args.runs / args.run
    for folder in (teacher, student):
        if not RunFolder(folder).exists():
            raise SystemExit(f"{folder} is not a finished run; build it with drkd-viz pipeline --preset demo")
    counts = [int(c) for c in args.proposals.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        dirs = {"teacher": teacher}
        for count in counts:
            copy = Path(scratch) / f"proposals-{count}"
            bulk = [path.name for path in RunFolder(student).bulk]
            shutil.copytree(student, copy, ignore=shutil.ignore_patterns(*bulk))
            cfg = yaml.safe_load(RunFolder(copy).config.read_text())
            cfg["model"]["rpn_pre_nms_top_n_test"], cfg["model"]["rpn_post_nms_top_n_test"] = 2 * count, count
            RunFolder(copy).config.write_text(yaml.safe_dump(cfg))
            dirs[f"{count} proposals"] = copy
        test = open_split(load_config(RunFolder(teacher).config).data, "test", train=False)
        costs = model_costs(dirs, [test[i][0] for i in range(min(COST_IMAGES, len(test)))])
        print(f"| student | speed-up, {torch.get_num_threads()} threads | speed-up, 1 thread | val AP | val AP_S |")
        print("|---|---|---|---|---|")
        for name in dirs:
            if name == "teacher":
                continue
            val = evaluate_run(dirs[name], "val", progress=False).stats
            cost = costs[name]
            print(
                f"| {name} | {cost['speedup']:.2f}x | {cost['speedup_1thread']:.2f}x | "
                f"{100 * val['AP']:.1f} | {100 * val['APs']:.1f} |"
            )


if __name__ == "__main__":
    main()
