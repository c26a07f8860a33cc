"""How big each DRKD loss term is next to the detection loss, at the start and the end of a short run.

    python bench/drkd_loss_scales.py --teacher runs/demo/teacher_faster_rcnn [--teacher runs/…/teacher_retinanet]
                                     [--iterations 100] [--presets default reference]

For every teacher (its family picks the student preset configs/demo/student_<family>.yaml) and every
distillation preset, a DRKD student trains for --iterations steps; the table gives each weighted
term divided by L_det (the sum of the detector's own terms), averaged over the first and the last
10 % of the iterations. This is the measurement behind the default loss weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DET_TERMS = {
    "faster_rcnn": ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"),
    "retinanet": ("classification", "bbox_regression"),
}
DISTILL_TERMS = ("loss_pr", "loss_ir", "loss_ins")


def run(teacher: Path, preset: str, iterations: int, out: Path) -> tuple[str, list[dict]]:
    from drkd_viz.engine.config import load_config
    from drkd_viz.engine.trainer import train
    from drkd_viz.runs import RunFolder

    family = json.loads(RunFolder(teacher).export_info.read_text())["detector"]["family"]
    cfg = load_config(
        REPO / "configs" / "demo" / f"student_{family}.yaml",
        overrides=[
            f"train.iterations={iterations}",
            "train.eval_split=none",
            f"train.checkpoint_every={iterations}",
            "distill.method=drkd",
            f"distill.teacher={teacher}",
            f"distill.preset={preset}",
            f"optim.warmup_iters={max(iterations // 10, 1)}",
        ],
    )
    train(cfg, out, quiet=True)
    rows = RunFolder(out).read_metrics()
    return family, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, action="append", required=True, help="a teacher run folder")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--presets", nargs="+", default=["default", "reference"])
    args = parser.parse_args()
    print(
        f"{'family':<12} {'preset':<10} {'term':<9} {'start: term/L_det':>18} {'end: term/L_det':>16} "
        f"{'start value':>12} {'end value':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for teacher in args.teacher:
            for preset in args.presets:
                family, rows = run(teacher, preset, args.iterations, Path(tmp) / f"{teacher.name}-{preset}")
                k = max(len(rows) // 10, 1)
                for name, part in (("start", rows[:k]), ("end", rows[-k:])):
                    det = sum(sum(r[t] for t in DET_TERMS[family]) for r in part) / len(part)
                    if name == "start":
                        start = {t: sum(r.get(t, 0.0) for r in part) / len(part) for t in DISTILL_TERMS}
                        start_det = det
                    else:
                        end = {t: sum(r.get(t, 0.0) for r in part) / len(part) for t in DISTILL_TERMS}
                        end_det = det
                print(f"{family:<12} {preset:<10} {'L_det':<9} {'':>18} {'':>16} {start_det:>12.4f} {end_det:>10.4f}")
                for term in DISTILL_TERMS:
                    print(
                        f"{family:<12} {preset:<10} {term:<9} {start[term] / start_det:>18.3f} "
                        f"{end[term] / end_det:>16.3f} {start[term]:>12.4f} {end[term]:>10.4f}"
                    )


if __name__ == "__main__":
    main()
