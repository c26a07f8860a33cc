"""The error analysis (TIDE's error types by size) on the demo runs: its time against COCOeval's on the same
detections, and its agreement with the ``tidecv`` package.

    python bench/error_analysis.py [--runs runs/demo] [--repeats 3] [--tide-python .venv-tide/bin/python]

For each model of the demo report (``drkd-viz pipeline --preset demo`` first), on its stored test detections:
- the time of ``error_breakdown`` (every size: one COCOeval matching run plus the error tests and 8 AP fixes per
  size), of ``match_detections`` (COCOeval's matching alone; it replaced the hand-made ``_matches`` of
  ``analysis/small_objects``, removed before this benchmark existed) and of the full COCOeval AP, best of
  ``--repeats``, measured side by side in this run (goal: the breakdown under 2 s, since the page recomputes it);
- the breakdown on all objects against ``tidecv`` 1.0.1 (TIDE's authors' package) on the same detections: the
  largest difference in AP50 and in each error type's recovered AP, in AP points.

``tidecv`` needs opencv-python and seaborn, which the project does not depend on, so it runs in a virtual
environment of its own, made on first use (from PyPI; about 150 MB):

    python -m venv .venv-tide && .venv-tide/bin/pip install tidecv==1.0.1 "numpy<2"

Without ``--tide-python`` (or that environment) the comparison is skipped with that instruction.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drkd_viz.analysis.small_objects import detections_file, ground_truth_file  # noqa: E402
from drkd_viz.evaluation import evaluate_detections, match_detections  # noqa: E402
from drkd_viz.runs.reports import read_report  # noqa: E402
from drkd_viz.tide import ERROR_TYPES, error_breakdown  # noqa: E402

TIDE_NAMES = {"cls": "Cls", "loc": "Loc", "both": "Both", "dupe": "Dupe", "bkg": "Bkg", "miss": "Miss"}
TIDE_SCRIPT = """
import json, sys
from tidecv import TIDE, datasets
gt = datasets.COCO(path=sys.argv[1])
out = {}
for name, path in json.loads(sys.argv[2]).items():
    tide = TIDE()
    run = tide.evaluate(gt, datasets.COCOResult(path=path, name=name), mode=TIDE.BOX)
    out[name] = {"ap": run.ap, "main": tide.get_main_errors()[name], "special": tide.get_special_errors()[name]}
print(json.dumps(out))
"""


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "demo")
    parser.add_argument("--report", default="demo")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tide-python", type=Path, default=REPO / ".venv-tide" / "bin" / "python")
    args = parser.parse_args()
    report = read_report(args.runs, args.report)
    gt_path = ground_truth_file(args.runs, report)
    gt = json.loads(gt_path.read_text())
    files, ours = {}, {}
    print(f"{gt_path}: {len(gt['images'])} images, {len(gt['annotations'])} objects")
    print(f"{'model':20s} {'detections':>10s} {'breakdown':>10s} {'matching':>10s} {'COCOeval AP':>12s}  ratio")
    for model in report["models"]:
        path = detections_file(args.runs, model, 0, report)
        dets = json.loads(path.read_text())
        files[model] = str(path)
        breakdown_s = best_time(lambda d=dets, m=model: ours.__setitem__(m, error_breakdown(gt, d)), args.repeats)
        matching_s = best_time(lambda d=dets: match_detections(gt, d), args.repeats)
        cocoeval_s = best_time(lambda d=dets: evaluate_detections(gt, d, backend="pycocotools"), args.repeats)
        verdict = "under 2 s" if breakdown_s < 2 else "OVER the 2 s goal"
        print(
            f"{model:20s} {len(dets):10d} {breakdown_s:9.2f}s {matching_s:9.2f}s {cocoeval_s:11.2f}s  "
            f"breakdown / COCOeval AP = {breakdown_s / cocoeval_s:.2f}x ({verdict}; best of {args.repeats})"
        )
    print("\nAP50 lost to each error type, all objects (AP points; ours):")
    header = " ".join(f"{TIDE_NAMES[k]:>6s}" for k in ERROR_TYPES)
    print(f"{'model':20s} {'AP50':>6s} {header}  FalsePos FalseNeg")
    for model, by_size in ours.items():
        r = by_size["all"]
        cells = " ".join(f"{100 * r.recovered[k]:6.2f}" for k in ERROR_TYPES)
        print(
            f"{model:20s} {100 * r.ap:6.2f} {cells}  {100 * r.recovered['false_positives']:8.2f} "
            f"{100 * r.recovered['false_negatives']:8.2f}"
        )
    if not args.tide_python.is_file():
        print(
            f"\ntidecv comparison skipped: {args.tide_python} not found. Make it with\n"
            '  python -m venv .venv-tide && .venv-tide/bin/pip install tidecv==1.0.1 "numpy<2"'
        )
        return
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "tide_run.py"
        script.write_text(TIDE_SCRIPT)
        # tidecv's COCO loader reads every annotation's segmentation; the embedded data has boxes only, and a box's
        # polygon changes nothing in box mode
        for ann in gt["annotations"]:
            x, y, w, h = ann["bbox"]
            ann.setdefault("segmentation", [[x, y, x + w, y, x + w, y + h, x, y + h]])
        tide_gt = Path(tmp) / "annotations.json"
        tide_gt.write_text(json.dumps(gt))
        done = subprocess.run(
            [str(args.tide_python), str(script), str(tide_gt), json.dumps(files)],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode:
        raise SystemExit(f"tidecv failed:\n{done.stderr[-3000:]}")
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    print("\nthe same with tidecv 1.0.1, and the difference ours − tidecv (AP points):")
    largest = 0.0
    for model, values in theirs.items():
        r = ours[model]["all"]
        cells = " ".join(f"{values['main'][TIDE_NAMES[k]]:6.2f}" for k in ERROR_TYPES)
        print(
            f"{model:20s} {values['ap']:6.2f} {cells}  {values['special']['FalsePos']:8.2f} "
            f"{values['special']['FalseNeg']:8.2f}"
        )
        diffs = [100 * r.ap - values["ap"]]
        diffs += [100 * r.recovered[k] - values["main"][TIDE_NAMES[k]] for k in ERROR_TYPES]
        diffs += [
            100 * r.recovered["false_positives"] - values["special"]["FalsePos"],
            100 * r.recovered["false_negatives"] - values["special"]["FalseNeg"],
        ]
        largest = max(largest, *(abs(d) for d in diffs))
        print(
            f"{'  difference':20s} "
            + " ".join(f"{d:+6.2f}" for d in diffs[:7])
            + "  "
            + " ".join(f"{d:+8.2f}" for d in diffs[7:])
        )
    print(f"\nlargest difference from tidecv: {largest:.3f} AP points")


if __name__ == "__main__":
    main()
