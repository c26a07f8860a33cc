"""What DRKD costs on top of training the student, measured side by side on the CPU.

    python bench/drkd_overhead.py [--steps 5] [--batch 8] [--family faster_rcnn]

(a) DRKD step time / (student step + teacher no-grad forward)          goal <= 1.15
(b) instance losses at batch 16, ~10 instances per image: batched vs a loop over images
                                                                       goal >= 5x faster, equal values
(c) peak memory (resident set, reset after set-up) of DRKD steps vs baseline steps, each in its own process
(d) the diagnostics (train.log_every): a DRKD step that logs them vs one that does not, and what that
    costs a run that logs every 10 iterations

Models are the demo presets (configs/demo), randomly initialised; images from the embedded demo
train split (generated if absent).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _configs(family: str):
    from drkd_viz.engine.config import load_config

    teacher = load_config(REPO / "configs" / "demo" / f"teacher_{family}.yaml").model
    student = load_config(REPO / "configs" / "demo" / f"student_{family}.yaml").model
    teacher.num_classes = student.num_classes = 9
    return teacher, student


def _batches(batch: int, count: int, data_root: str):
    from drkd_viz.data.coco import CocoDetection, collate_detection

    ds = CocoDetection.from_split(data_root, "train")
    return [collate_detection([ds[(k * batch + i) % len(ds)] for i in range(batch)]) for k in range(count)]


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def step_times(family: str, steps: int, batch: int, data_root: str, only: str | None = None) -> dict[str, float]:
    """Median seconds of: a student training step, a teacher no-grad FPN forward, a DRKD training step."""
    import torch

    from drkd_viz.distill.config import resolve_distill
    from drkd_viz.distill.distiller import DistillationObjective
    from drkd_viz.models.capture import fpn_features, transform_inputs
    from drkd_viz.models.factory import build_detector

    torch.manual_seed(0)
    teacher_cfg, student_cfg = _configs(family)
    batches = _batches(batch, steps + 2, data_root)
    out: dict[str, float] = {}

    def timed(fn) -> float:
        _reset_peak_rss()  # the peak of the steps themselves, not of imports and model building
        times = []
        for k, (images, targets) in enumerate(batches):
            started = time.perf_counter()
            fn(images, targets)
            if k >= 2:
                times.append(time.perf_counter() - started)
        return _median(times)

    if only in (None, "baseline"):
        student = build_detector(student_cfg).train()
        opt = torch.optim.SGD(student.parameters(), lr=1e-4, momentum=0.9)

        def student_step(images, targets):
            loss = sum(student(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()

        out["student_step"] = timed(student_step)
    if only is None:
        teacher = build_detector(teacher_cfg).eval()

        def teacher_forward(images, targets):
            with torch.no_grad():
                fpn_features(teacher, transform_inputs(teacher, images)[0].tensors)

        out["teacher_forward"] = timed(teacher_forward)
    if only in (None, "drkd"):
        settings = resolve_distill({"method": "drkd", "teacher": "bench"}, student_cfg.levels)
        objective = DistillationObjective(
            build_detector(student_cfg), build_detector(teacher_cfg), settings, student_cfg, teacher_cfg
        ).train()
        opt = torch.optim.SGD([p for p in objective.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

        def drkd_step(images, targets):
            loss = sum(objective(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()

        out["drkd_step"] = timed(drkd_step)
        if only is None:
            from drkd_viz.distill.diagnostics import step_gradient_report, term_gradients

            student_params = [p for p in objective.student.parameters() if p.requires_grad]

            def watched_step(images, targets):  # what the trainer does on a logged iteration
                objective.watch(True)
                losses = objective(images, targets)
                extra = {k: losses[k] for k in objective.distillation_terms if k in losses}
                grads = term_gradients(extra, student_params)
                opt.zero_grad()
                sum(losses.values()).backward()
                step_gradient_report(student_params, grads)
                objective.metrics()
                opt.step()
                objective.watch(False)

            out["drkd_step_watched"] = timed(watched_step)
    out["peak_MB"] = _peak_rss_mb()
    return out


def _reset_peak_rss() -> None:
    try:  # Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def instance_batched_vs_loop(repeats: int = 5) -> dict[str, float]:
    """Batch 16, ~10 instances per image, P2/P3 of 128-channel features at 256 px."""
    import torch

    from drkd_viz.distill.instance_relation import InstanceRelationLoss

    torch.manual_seed(0)
    levels = ["P2", "P3"]
    loss_fn = InstanceRelationLoss(levels, 64, 128, 3, "learned", "features", norm="frobenius")
    g = torch.Generator().manual_seed(0)
    batch, size = 16, 256
    student = {
        lv: torch.randn(batch, 64, size // 2 ** int(lv[1]), size // 2 ** int(lv[1]), generator=g) for lv in levels
    }
    teacher = {
        lv: torch.randn(batch, 128, size // 2 ** int(lv[1]), size // 2 ** int(lv[1]), generator=g) for lv in levels
    }
    counts = [int(c) for c in torch.randint(7, 14, (batch,), generator=g)]
    boxes = []
    for n in counts:
        xy = torch.rand(n, 2, generator=g) * (size - 40)
        boxes.append(torch.cat([xy, xy + 6 + torch.rand(n, 2, generator=g) * 30], 1))

    def batched():
        ir, ins, _ = loss_fn(student, teacher, boxes)
        (ir + ins).backward()
        return float(ir.detach()), float(ins.detach())

    def loop():  # what the authors' code does: one image at a time
        ir_total = ins_total = 0.0
        total = None
        for i, b in enumerate(boxes):
            ir, ins, _ = loss_fn(
                {k: v[i : i + 1] for k, v in student.items()}, {k: v[i : i + 1] for k, v in teacher.items()}, [b]
            )
            total = ir + ins if total is None else total + ir + ins
            ir_total, ins_total = ir_total + float(ir.detach()), ins_total + float(ins.detach())
        total.backward()
        return ir_total, ins_total

    result = {}
    for name, fn in (("batched", batched), ("loop", loop)):
        times = []
        for _ in range(repeats):
            loss_fn.zero_grad()
            started = time.perf_counter()
            values = fn()
            times.append(time.perf_counter() - started)
        result[f"{name}_s"], result[f"{name}_values"] = _median(times), values
    result["instances"] = sum(counts)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--family", default="faster_rcnn", choices=["faster_rcnn", "retinanet"])
    parser.add_argument("--runs", type=Path, default=REPO / "runs")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # internal: one measurement in this process
    args = parser.parse_args()
    from drkd_viz.runs import RunsRoot

    data_root = str(RunsRoot(args.runs / "demo").data)
    if args.only:
        print(json.dumps(step_times(args.family, args.steps, args.batch, data_root, args.only)))
        return

    from drkd_viz.data.embedded import generate_dataset

    generate_dataset(data_root, preset="demo", seed=0, progress=False)
    teacher_cfg, student_cfg = _configs(args.family)
    print(
        f"{args.family}: teacher {teacher_cfg.backbone}-FPN{teacher_cfg.fpn_channels}, student "
        f"{student_cfg.backbone}-FPN{student_cfg.fpn_channels}, batch {args.batch}, {student_cfg.min_size} px, "
        f"median of {args.steps} steps"
    )
    t = step_times(args.family, args.steps, args.batch, data_root)
    ratio = t["drkd_step"] / (t["student_step"] + t["teacher_forward"])
    print(
        f"(a) student step {t['student_step']:.3f} s + teacher no-grad forward {t['teacher_forward']:.3f} s = "
        f"{t['student_step'] + t['teacher_forward']:.3f} s; DRKD step {t['drkd_step']:.3f} s -> "
        f"ratio {ratio:.3f} (goal <= 1.15)"
    )
    watched = t["drkd_step_watched"] / t["drkd_step"]
    print(
        f"(d) diagnostics: DRKD step that logs them {t['drkd_step_watched']:.3f} s vs {t['drkd_step']:.3f} s -> "
        f"{watched:.2f}x on a logged step; every 10 iterations: +{(watched - 1) / 10 * 100:.1f} % training time"
    )
    r = instance_batched_vs_loop()
    same = all(
        abs(a - b) <= 1e-4 * max(1.0, abs(b)) for a, b in zip(r["batched_values"], r["loop_values"], strict=True)
    )
    print(
        f"(b) instance losses, batch 16, {r['instances']} instances (forward + backward): batched "
        f"{r['batched_s'] * 1000:.1f} ms, per-image loop {r['loop_s'] * 1000:.1f} ms -> "
        f"{r['loop_s'] / r['batched_s']:.1f}x faster (goal >= 5x); values L_IR {r['batched_values'][0]:.4f} vs "
        f"{r['loop_values'][0]:.4f}, L_INS {r['batched_values'][1]:.4f} vs {r['loop_values'][1]:.4f} "
        f"({'equal' if same else 'DIFFERENT'})"
    )
    peaks = {}
    for which in ("baseline", "drkd"):
        cmd = [
            sys.executable,
            __file__,
            "--only",
            which,
            "--steps",
            "2",
            "--batch",
            str(args.batch),
            "--family",
            args.family,
            "--runs",
            str(args.runs),
        ]
        peaks[which] = json.loads(
            subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
        )
    print(
        f"(c) peak memory during the steps (resident set): baseline {peaks['baseline']['peak_MB']:.0f} MB, DRKD "
        f"{peaks['drkd']['peak_MB']:.0f} MB -> {peaks['drkd']['peak_MB'] / peaks['baseline']['peak_MB']:.2f}x"
    )


if __name__ == "__main__":
    main()
