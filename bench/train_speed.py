"""Training speed of the CPU presets: images/s and peak memory per training step, side by side.

    python bench/train_speed.py [--steps 6] [--batch 8] [--threads N]

Each configuration runs in its own process (so peak memory is its own) on batches of the embedded
demo training split (generated if absent): a few warm-up steps, then timed steps of forward +
backward + SGD update. "stock" is torchvision's default Faster R-CNN R50-FPN head sizes at the
same image size, for reference.
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

# torchvision's fasterrcnn_resnet50_fpn defaults (frozen BatchNorm, 3 trainable stages, 2000 proposals,
# 512 sampled RoIs, 1024-wide box head), at the presets' image size
STOCK = {
    "family": "faster_rcnn",
    "backbone": "resnet50",
    "fpn_channels": 256,
    "box_head_width": 1024,
    "norm": "frozen_bn",
    "trainable_backbone_layers": 3,
    "rpn_pre_nms_top_n_train": 2000,
    "rpn_post_nms_top_n_train": 2000,
    "rpn_pre_nms_top_n_test": 1000,
    "rpn_post_nms_top_n_test": 1000,
    "box_batch_size_per_image": 512,
}


def presets() -> dict[str, dict]:
    from drkd_viz.engine.config import load_config

    found = {"torchvision R50 defaults": {"model": STOCK}}
    for path in sorted((REPO / "configs" / "demo").glob("*.yaml")):
        cfg = load_config(path)
        if not cfg.distill:
            found[path.stem] = {"model": {k: v for k, v in cfg.model.to_dict().items() if k != "num_classes"}}
    return found


def measure(model_cfg: dict, steps: int, batch: int, threads: int | None, data_root: str) -> dict:
    import torch

    from drkd_viz.data.coco import CocoDetection, collate_detection
    from drkd_viz.models.factory import DetectorConfig, build_detector, count_parameters

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    dataset = CocoDetection.from_split(data_root, "train")
    defaults = {k: v for k, v in DetectorConfig().to_dict().items()}
    cfg = DetectorConfig(**{**defaults, **model_cfg, "num_classes": dataset.num_classes})
    model = build_detector(cfg).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.001, momentum=0.9)
    warmup = 2
    times = []
    for step in range(warmup + steps):
        images, targets = collate_detection([dataset[(step * batch + i) % len(dataset)] for i in range(batch)])
        started = time.perf_counter()
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - started)
    seconds = sorted(times)[len(times) // 2]
    return {
        "s_per_step": seconds,
        "images_per_s": batch / seconds,
        "params_M": count_parameters(model) / 1e6,
        "peak_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "desc": f"{cfg.family}/{cfg.backbone}-FPN{cfg.fpn_channels} head {cfg.box_head_width} @{cfg.min_size}px",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--runs", type=Path, default=REPO / "runs")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one config (JSON) and print JSON
    args = parser.parse_args()
    from drkd_viz.runs import RunsRoot

    data_root = str(RunsRoot(args.runs / "demo").data)
    if args.one:
        print(json.dumps(measure(json.loads(args.one), args.steps, args.batch, args.threads, data_root)))
        return

    from drkd_viz.data.embedded import generate_dataset

    generate_dataset(data_root, preset="demo", seed=0, progress=False)
    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"median of {args.steps} steps after 2 warm-up steps"
    )
    print(f"{'preset':<28} {'model':<52} {'params':>7} {'s/step':>7} {'img/s':>6} {'peak MB':>8} {'vs stock':>8}")
    reference = None
    for name, spec in presets().items():
        cmd = [
            sys.executable,
            __file__,
            "--one",
            json.dumps(spec["model"]),
            "--steps",
            str(args.steps),
            "--batch",
            str(args.batch),
            "--runs",
            str(args.runs),
        ]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        reference = reference or r["s_per_step"]
        print(
            f"{name:<28} {r['desc']:<52} {r['params_M']:>6.1f}M {r['s_per_step']:>7.3f} {r['images_per_s']:>6.1f} "
            f"{r['peak_MB']:>8.0f} {reference / r['s_per_step']:>7.2f}x"
        )


if __name__ == "__main__":
    main()
