"""The student exported to ONNX gives PyTorch's detections under ONNX Runtime, at any image size."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from drkd_viz.engine.data import open_split
from drkd_viz.engine.inference import load_student
from drkd_viz.engine.onnx_export import detection_order, export_onnx, onnx_predict, onnx_session
from drkd_viz.errors import UserError


@pytest.fixture(scope="module")
def exported(quick_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "student.onnx"
    record = export_onnx(quick_runs / "baseline-s0", out)
    return out, record


def test_onnx_detections_equal_pytorch_on_test_images(quick_runs, exported):
    out, record = exported
    model, cfg = load_student(quick_runs / "baseline-s0")
    session = onnx_session(out)
    dataset = open_split(cfg.data, "test", train=False)
    sizes, compared = set(), 0
    with torch.no_grad():
        for index in range(8):
            image = dataset[index][0]
            sizes.add(tuple(image.shape[1:]))
            ref = {k: v.numpy() for k, v in model([image])[0].items()}
            got = onnx_predict(session, image)
            assert len(got["scores"]) == len(ref["scores"]), index
            a, b = detection_order(ref), detection_order(got)
            np.testing.assert_allclose(got["boxes"][b], ref["boxes"][a], rtol=0, atol=1e-3)
            np.testing.assert_allclose(got["scores"][b], ref["scores"][a], rtol=0, atol=1e-4)
            assert (got["labels"][b] == ref["labels"][a]).all()
            compared += len(ref["scores"])
    assert len(sizes) > 1, "the test images should exercise the dynamic image size"
    assert compared > 0
    assert record["parity_check"]["labels_equal"] and record["parity_check"]["max_box_difference_px"] < 1e-3
    assert record["classes"] and record["opset"] == 17


def test_export_command_writes_the_model_and_its_record(quick_runs, tmp_path):
    out = tmp_path / "nested" / "student.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "drkd_viz.cli", "export", "--run", str(quick_runs / "baseline-s0"), "--onnx", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and "labels equal" in proc.stdout
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["inputs"]["images"].startswith("float32 [3, height, width]")
    assert not list(out.parent.glob(".*.tmp")), "the export is written atomically"


def test_export_refuses_bad_names_and_missing_files(quick_runs, tmp_path):
    with pytest.raises(UserError, match=r"must end in \.onnx"):
        export_onnx(quick_runs / "baseline-s0", tmp_path / "student.pt")
    with pytest.raises(UserError, match="no such ONNX file"):
        onnx_session(tmp_path / "absent.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(UserError, match="not a valid ONNX model"):
        onnx_session(tmp_path / "broken.onnx")
