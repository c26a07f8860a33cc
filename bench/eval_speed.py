"""Evaluation backends side by side: time of pycocotools / faster-coco-eval and the largest difference
between their results on the same detections.

    python bench/eval_speed.py [--repeats 3]

Detections are ground-truth boxes jittered (two per object, 20 % with a wrong class) plus random
false positives, on (a) the 55 real COCO val2017 photos in tests/data/coco_mini (or any COCO
annotation file given with --coco) and (b) the embedded
dataset's demo test split (generated if absent; about 15 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drkd_viz.evaluation import evaluate_detections, perturbed_detections  # noqa: E402
from drkd_viz.runs import RunsRoot  # noqa: E402


def bench(name: str, gt: dict, dets: list[dict], repeats: int) -> None:
    times, results = {}, {}
    for backend in ("pycocotools", "faster"):
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            results[backend] = evaluate_detections(gt, dets, backend=backend)
            runs.append(time.perf_counter() - started)
        times[backend] = min(runs)
    ref, fast = results["pycocotools"], results["faster"]
    diff_stats = max(abs(ref.stats[k] - fast.stats[k]) for k in ref.stats)
    diff_class = max(abs((ref.per_class[k] or 0) - (fast.per_class[k] or 0)) for k in ref.per_class)
    diff_arrays = float(np.abs(ref.precision - fast.precision).max())
    print(f"{name}: {len(gt['images'])} images, {len(gt['annotations'])} objects, {len(dets)} detections")
    print(
        f"  pycocotools {times['pycocotools']:.3f} s | faster-coco-eval {times['faster']:.3f} s | "
        f"ratio pycocotools/faster = {times['pycocotools'] / times['faster']:.2f}x (best of {repeats})"
    )
    print(
        f"  largest difference: stats {diff_stats:.3g}, per-class AP {diff_class:.3g}, precision array "
        f"{diff_arrays:.3g}; AP = {ref.stats['AP']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=Path, default=REPO / "runs", help="runs folder holding demo/data")
    parser.add_argument(
        "--coco", type=Path, default=REPO / "tests" / "data" / "coco_mini" / "annotations.json", help="COCO annotations"
    )
    args = parser.parse_args()

    gt = json.loads(args.coco.read_text())
    bench(f"real COCO ({args.coco.parent.name})", gt, perturbed_detections(gt, 0, false_per_image=60), args.repeats)

    from drkd_viz.data.embedded import generate_dataset

    root = RunsRoot(args.runs / "demo").data
    generate_dataset(root, preset="demo", seed=0, progress=False)
    gt = json.loads((root / "test" / "annotations.json").read_text())
    bench("embedded demo test split", gt, perturbed_detections(gt, 0, false_per_image=60), args.repeats)


if __name__ == "__main__":
    main()
