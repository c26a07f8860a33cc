"""The student as an ONNX model, for ONNX Runtime, OpenVINO or TensorRT.

The whole torchvision detector is exported, pre- and post-processing included (resize, normalisation,
anchors, RPN / box NMS, rescaling to input pixels). It takes one image and returns its detections:

    images  float32 [3, H, W], RGB in [0, 1], any H and W (dynamic)
    boxes   float32 [N, 4]  x1, y1, x2, y2 in the input image's pixels
    labels  int64   [N]     1..K, the class table in OUT.json (0 is the background)
    scores  float32 [N]

Needs ``pip install "drkd_viz[onnx]"`` (onnx and onnxruntime). Export uses torch's TorchScript-based ONNX
exporter (``dynamo=False``): torchvision's detection models trace through it.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drkd_viz.errors import UserError
from drkd_viz.runs import RunFolder
from drkd_viz.utils.io import atomic_write_json

OPSET = 17
INPUTS = ["images"]
OUTPUTS = ["boxes", "labels", "scores"]


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise UserError(f"ONNX export needs {module}: pip install 'drkd_viz[onnx]'") from None


def export_onnx(
    run_dir: str | os.PathLike, out: str | os.PathLike, opset: int = OPSET, check_size: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Write the run's trained detector to ``out`` (ONNX) and ``out`` with ``.json`` (classes, input and
    output spec, versions, and a parity check against PyTorch on a random image of ``check_size``,
    default the detector's own input size). Returns that record."""
    from drkd_viz.engine.inference import load_student

    _require("onnx")
    out = Path(out)
    if out.suffix != ".onnx":
        raise UserError(f"--onnx {out}: the file name must end in .onnx")
    model, cfg = load_student(run_dir, "cpu")
    size = check_size or (cfg.model.min_size, cfg.model.max_size)
    example = [torch.rand(3, *size, generator=torch.Generator().manual_seed(0))]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about data-dependent shapes: the axes below are dynamic
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                opset_version=opset,
                input_names=INPUTS,
                output_names=OUTPUTS,
                dynamic_axes={"images": {1: "height", 2: "width"}, **{name: {0: "detections"} for name in OUTPUTS}},
                dynamo=False,
            )
    except Exception as exc:  # the exporter's own errors (an unsupported opset, an operator it cannot convert)
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"ONNX export of {run_dir} failed at opset {opset}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        ) from None
    os.replace(tmp, out)
    seconds = time.perf_counter() - started
    session = onnx_session(out)
    difference = compare(model, session, example[0])
    classes_file = RunFolder(Path(run_dir)).export_info
    classes = json.loads(classes_file.read_text())["classes"] if classes_file.is_file() else None
    record = {
        "model": out.name,
        "run": str(Path(run_dir).resolve()),
        "family": cfg.model.family,
        "backbone": cfg.model.backbone,
        "opset": opset,
        "inputs": {"images": "float32 [3, height, width], RGB in [0, 1]"},
        "outputs": {
            "boxes": "float32 [N, 4] x1 y1 x2 y2, input pixels",
            "labels": "int64 [N]",
            "scores": "float32 [N]",
        },
        "classes": classes,
        "export_seconds": round(seconds, 1),
        "parity_check": {"image_size": list(size), **difference},
        "versions": {"torch": torch.__version__, "onnx": _require("onnx").__version__},
    }
    atomic_write_json(out.with_suffix(".json"), record)
    return record


def onnx_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session of an exported detector."""
    ort = _require("onnxruntime")
    if not Path(path).is_file():
        raise UserError(f"{path}: no such ONNX file; write it with drkd-viz export --run RUN --onnx {path}")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for invalid files
        raise UserError(f"{path} is not a valid ONNX model ({type(exc).__name__}: {exc})") from None


def onnx_predict(session: Any, image: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """Detections of one [3, H, W] image in [0, 1]: boxes, labels, scores (sorted by score, as exported)."""
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    boxes, labels, scores = session.run(OUTPUTS, {"images": array.astype(np.float32, copy=False)})
    return {"boxes": boxes, "labels": labels, "scores": scores}


@torch.no_grad()
def compare(model: torch.nn.Module, session: Any, image: torch.Tensor) -> dict[str, Any]:
    """Largest differences between PyTorch's and ONNX Runtime's detections of ``image``, after sorting both
    by score (ties broken by box). Counts that differ are reported, not compared box by box."""
    ref = model([image])[0]
    got = onnx_predict(session, image)
    ref = {k: ref[k].numpy() for k in OUTPUTS}
    result: dict[str, Any] = {"detections_torch": len(ref["scores"]), "detections_onnx": len(got["scores"])}
    if len(ref["scores"]) != len(got["scores"]):
        return result
    order_ref, order_got = detection_order(ref), detection_order(got)
    result["max_box_difference_px"] = float(np.abs(ref["boxes"][order_ref] - got["boxes"][order_got]).max(initial=0))
    result["max_score_difference"] = float(np.abs(ref["scores"][order_ref] - got["scores"][order_got]).max(initial=0))
    result["labels_equal"] = bool((ref["labels"][order_ref] == got["labels"][order_got]).all())
    return result


def detection_order(dets: dict[str, np.ndarray]) -> np.ndarray:
    """Indices that sort detections by score (descending), ties broken by box coordinates."""
    keys = [dets["boxes"][:, 3], dets["boxes"][:, 2], dets["boxes"][:, 1], dets["boxes"][:, 0], -dets["scores"]]
    return np.lexsort(keys)
