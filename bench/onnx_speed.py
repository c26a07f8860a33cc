"""The exported ONNX student against PyTorch on CPU: images/s side by side, and the largest difference.

    python bench/onnx_speed.py --run runs/demo/baseline-s0 [--images 50] [--threads N]

Exports the run's detector (drkd-viz export), then times PyTorch and ONNX Runtime on the same test
images of the run's dataset, one image per call, alternating the two in rounds so that both see the
same machine load. Prints images/s of each, their ratio, and the largest box / score difference and
label agreement over all images (detections sorted by score).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drkd_viz.engine.data import open_split  # noqa: E402
from drkd_viz.engine.inference import load_student  # noqa: E402
from drkd_viz.engine.onnx_export import detection_order, export_onnx, onnx_predict, onnx_session  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "demo" / "baseline-s0")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, cfg = load_student(args.run)
    dataset = open_split(cfg.data, "test", train=False)
    images = [dataset[i][0] for i in range(min(args.images, len(dataset)))]
    with tempfile.TemporaryDirectory() as tmp:
        record = export_onnx(args.run, Path(tmp) / "student.onnx")
        session = onnx_session(Path(tmp) / "student.onnx", threads=args.threads)
        box_diff = score_diff = 0.0
        labels_equal, counts_equal = True, 0
        with torch.no_grad():
            for image in images:  # warm-up and parity
                ref = {k: v.numpy() for k, v in model([image])[0].items()}
                got = onnx_predict(session, image)
                if len(ref["scores"]) != len(got["scores"]):
                    continue
                counts_equal += 1
                a, b = detection_order(ref), detection_order(got)
                box_diff = max(box_diff, float(np.abs(ref["boxes"][a] - got["boxes"][b]).max(initial=0)))
                score_diff = max(score_diff, float(np.abs(ref["scores"][a] - got["scores"][b]).max(initial=0)))
                labels_equal &= bool((ref["labels"][a] == got["labels"][b]).all())
            seconds = {"pytorch": 0.0, "onnxruntime": 0.0}
            for _ in range(args.rounds):
                started = time.perf_counter()
                for image in images:
                    model([image])
                seconds["pytorch"] += time.perf_counter() - started
                started = time.perf_counter()
                for image in images:
                    onnx_predict(session, image)
                seconds["onnxruntime"] += time.perf_counter() - started
    n = len(images) * args.rounds
    rate = {k: n / v for k, v in seconds.items()}
    print(f"{args.run} ({record['family']}, {record['backbone']}), {len(images)} test images, {args.threads} threads")
    print(
        f"  PyTorch {rate['pytorch']:.1f} img/s | ONNX Runtime {rate['onnxruntime']:.1f} img/s | "
        f"ratio ONNX/PyTorch = {rate['onnxruntime'] / rate['pytorch']:.2f}x ({args.rounds} alternating rounds)"
    )
    print(
        f"  parity: same detection count on {counts_equal}/{len(images)} images; largest box difference "
        f"{box_diff:.2g} px, score difference {score_diff:.2g}, labels {'equal' if labels_equal else 'DIFFER'}"
    )


if __name__ == "__main__":
    main()
