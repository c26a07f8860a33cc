"""COCO evaluation: hand-checked cases, exact parity of the two backends, bad detection files, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drkd_viz.errors import DetectionsError
from drkd_viz.evaluation import METRIC_KEYS, evaluate_detections, perturbed_detections

BACKENDS = ["pycocotools", "faster"]


def _gt(boxes_per_image: dict[int, list[tuple[list[float], int]]], size=(100, 100)) -> dict:
    images = [{"id": i, "file_name": f"{i}.jpg", "width": size[0], "height": size[1]} for i in boxes_per_image]
    anns = []
    for image_id, boxes in boxes_per_image.items():
        for box, cat in boxes:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


def _det(image_id, box, score, cat=1):
    return {"image_id": image_id, "category_id": cat, "bbox": box, "score": score}


@pytest.mark.parametrize("backend", BACKENDS)
def test_perfect_detections_score_one(backend):
    gt = _gt({1: [([10, 10, 20, 20], 1)], 2: [([50, 50, 40, 30], 1)]})
    dets = [_det(1, [10, 10, 20, 20], 0.9), _det(2, [50, 50, 40, 30], 0.8)]
    result = evaluate_detections(gt, dets, backend=backend)
    assert result.stats["AP"] == 1.0 and result.stats["AP50"] == 1.0 and result.stats["AR100"] == 1.0
    assert result.stats["APs"] == 1.0  # 400 px² is small
    assert result.stats["APm"] == 1.0  # 1200 px² is medium
    assert result.stats["APl"] == -1.0  # COCO's "nothing to measure"
    assert result.per_class == {"a": 1.0, "b": None}
    assert result.gt_counts == {"small": 1, "medium": 1, "large": 0}


@pytest.mark.parametrize("backend", BACKENDS)
def test_iou_062_counts_for_three_of_ten_thresholds(backend):
    """A single detection with IoU 0.62: matched at IoU 0.50, 0.55, 0.60 only -> AP = 3/10, AP50 = 1, AP75 = 0."""
    gt = _gt({1: [([0, 0, 50, 50], 1)]})
    # a 50 x 31 box inside the 50 x 50 ground truth: IoU = 1550 / 2500 = 0.62
    result = evaluate_detections(gt, [_det(1, [0, 0, 50, 31], 0.9)], backend=backend)
    assert result.stats["AP"] == pytest.approx(0.3, abs=1e-12)
    assert result.stats["AP50"] == 1.0 and result.stats["AP75"] == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_ranked_tp_fp_tp_matches_the_101_point_hand_computation(backend):
    """Two objects; detections ranked TP (0.9), FP (0.8), TP (0.7).
    Precision/recall: (1, 1/2), (1/2, 1/2), (2/3, 1). COCO interpolates precision as the max to the right,
    then reads it at recall 0, 0.01, …, 1: 1.0 for the 51 points <= 0.5, 2/3 for the 50 points above."""
    gt = _gt({1: [([0, 0, 20, 20], 1)], 2: [([30, 30, 20, 20], 1)]})
    dets = [_det(1, [0, 0, 20, 20], 0.9), _det(1, [60, 60, 20, 20], 0.8), _det(2, [30, 30, 20, 20], 0.7)]
    result = evaluate_detections(gt, dets, backend=backend)
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101
    assert result.stats["AP50"] == pytest.approx(expected, abs=1e-12)
    assert result.stats["AP"] == pytest.approx(expected, abs=1e-12)  # every box is exact: same at all IoUs
    assert result.stats["AR1"] == 1.0  # one detection per image: each image's best-scored one is a TP
    assert result.stats["AR100"] == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_crowd_matches_are_ignored_not_false_positives(backend):
    gt = _gt({1: [([0, 0, 20, 20], 1)]})
    gt["annotations"].append(
        {"id": 9, "image_id": 1, "category_id": 1, "bbox": [50, 50, 40, 40], "area": 1600, "iscrowd": 1}
    )
    dets = [_det(1, [55, 55, 20, 20], 0.95), _det(1, [0, 0, 20, 20], 0.9)]  # first one lies inside the crowd
    assert evaluate_detections(gt, dets, backend=backend).stats["AP"] == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_detections_scores_zero(backend):
    gt = _gt({1: [([0, 0, 20, 20], 1)]})
    result = evaluate_detections(gt, [], backend=backend)
    assert result.stats["AP"] == 0.0 and result.stats["AR100"] == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_backends_agree_exactly_on_real_coco(mini_coco, seed):
    gt = json.loads((mini_coco / "annotations.json").read_text())
    dets = perturbed_detections(gt, seed)
    ref = evaluate_detections(gt, dets, backend="pycocotools")
    fast = evaluate_detections(gt, dets, backend="faster")
    assert ref.stats == fast.stats  # bit-identical floats
    assert ref.per_class == fast.per_class
    assert np.array_equal(ref.precision, fast.precision) and np.array_equal(ref.recall, fast.recall)
    assert 0.05 < ref.stats["AP"] < 0.9
    # pycocotools' own summary differs from ours by its epsilon at most
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco_gt = COCO()
    coco_gt.dataset = gt
    coco_gt.createIndex()
    ev = COCOeval(coco_gt, coco_gt.loadRes([dict(d) for d in dets]), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert np.max(np.abs(np.array(list(ref.stats.values())) - ev.stats)) <= 2.3e-16


def test_backends_agree_exactly_on_embedded_data(quick_data):
    gt_file = quick_data / "test" / "annotations.json"
    dets = perturbed_detections(json.loads(gt_file.read_text()), seed=3)
    ref = evaluate_detections(gt_file, dets, backend="pycocotools")
    fast = evaluate_detections(gt_file, dets, backend="faster")
    assert ref.stats == fast.stats and ref.per_class == fast.per_class


def test_per_class_ap_is_the_mean_over_its_precision():
    gt = _gt({1: [([0, 0, 20, 20], 1), ([40, 40, 20, 20], 2)]})
    dets = [_det(1, [0, 0, 20, 20], 0.9, 1), _det(1, [70, 70, 20, 20], 0.9, 2), _det(1, [40, 40, 20, 20], 0.8, 2)]
    result = evaluate_detections(gt, dets)
    assert result.per_class["a"] == 1.0
    # class b: FP (0.9) then TP (0.8): precision 0 then 1/2, interpolated to 1/2 at every recall point
    assert result.per_class["b"] == 0.5
    assert result.stats["AP"] == pytest.approx((result.per_class["a"] + result.per_class["b"]) / 2, abs=1e-12)


@pytest.mark.parametrize(
    ("detections", "message"),
    [
        ({"not": "a list"}, "expected a JSON list of detections"),
        ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}], r"missing keys \['score'\]"),
        ([_det(42, [0, 0, 5, 5], 0.5)], r"\[0\].image_id: 42 is not an image of the ground truth"),
        ([_det(1, [0, 0, 5, 5], 0.5, cat=7)], r"\[0\].category_id: 7 is not a category of the ground truth"),
        ([_det(1, [0, 0, 5, 5], float("nan"))], r"\[0\].score: expected a finite number, got nan"),
        ([_det(1, [0, 0, 5], 0.5)], r"\[0\].bbox: expected 4 finite numbers"),
        ([_det(1, [0, 0, -5, 5], 0.5)], "negative width or height"),
    ],
)
def test_bad_detections_get_clear_errors(detections, message):
    with pytest.raises(DetectionsError, match=message):
        evaluate_detections(_gt({1: [([0, 0, 20, 20], 1)]}), detections)


def test_unknown_backend():
    with pytest.raises(DetectionsError, match="unknown evaluation backend 'fast'"):
        evaluate_detections(_gt({1: [([0, 0, 20, 20], 1)]}), [], backend="fast")


def test_cli_eval_writes_metrics_in_cocoeval_order(tmp_path, mini_coco):
    from typer.testing import CliRunner

    from drkd_viz.cli import app

    gt = json.loads((mini_coco / "annotations.json").read_text())
    dets_file = tmp_path / "dets.json"
    dets_file.write_text(json.dumps(perturbed_detections(gt, 5)))
    out = tmp_path / "metrics.json"
    args = ["eval", "--gt", str(mini_coco / "annotations.json"), "--detections", str(dets_file), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--backend", "faster"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert list(metrics)[:12] == list(METRIC_KEYS)
    assert all(0.0 <= metrics[k] <= 1.0 for k in METRIC_KEYS)
    assert len(metrics["per_class"]) == 80 and "person" in metrics["per_class"]
    reference = evaluate_detections(mini_coco / "annotations.json", dets_file)
    assert [metrics[k] for k in METRIC_KEYS] == [reference.stats[k] for k in METRIC_KEYS]


def test_cli_reports_bad_detections_without_traceback(tmp_path, mini_coco):
    import subprocess
    import sys

    dets_file = tmp_path / "dets.json"
    dets_file.write_text('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": NaN}]')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "drkd_viz.cli",
            "eval",
            "--gt",
            str(mini_coco / "annotations.json"),
            "--detections",
            str(dets_file),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "error:" in proc.stderr and "is not an image of the ground truth" in proc.stderr
    assert "score: expected a finite number, got nan" in proc.stderr
