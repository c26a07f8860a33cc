"""COCO evaluation: hand-checked cases, exact parity of the two backends, bad detection files, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drkd_viz.errors import DetectionsError
from drkd_viz.evaluation import AREA_NAMES, METRIC_KEYS, evaluate_detections, match_detections, perturbed_detections

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


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_are_the_true_positives_behind_the_recall(mini_coco, seed):
    """On real COCO photos, per class and area range: the objects match_detections calls found, over the objects
    it counts, are COCOeval's recall at IoU 0.50 (its precision/recall arrays), and every found object is one
    true-positive detection."""
    gt = json.loads((mini_coco / "annotations.json").read_text())
    dets = perturbed_detections(gt, seed=seed)
    result = evaluate_detections(gt, dets, backend="pycocotools")
    names = {c["id"] for c in gt["categories"]}
    for a, area in enumerate(AREA_NAMES):
        matches = match_detections(gt, dets, iou=0.5, area=area)
        for k, cid in enumerate(sorted(names)):
            objects = [o for o in matches.objects if o["category_id"] == cid]
            tps = [d for d in matches.detections if d["category_id"] == cid and d["outcome"] == "tp"]
            if not objects:
                assert result.recall[0, k, a, -1] == -1 and not tps
                continue
            found = [o for o in objects if o["det_index"] >= 0]
            assert len(found) / len(objects) == pytest.approx(result.recall[0, k, a, -1], abs=1e-12)
            assert sorted(o["det_index"] for o in found) == sorted(d["det_index"] for d in tps)
            assert all(o["iou"] >= 0.5 for o in found)


def test_match_outcomes_on_hand_made_cases():
    """A duplicate, a wrong class at high IoU, a background false positive, a poorly localised box of the right
    class, a missed object and a crowd region, each decided as COCOeval decides it."""
    gt = _gt({1: [([10, 10, 20, 20], 1), ([60, 60, 20, 20], 1), ([40, 5, 10, 10], 2)]})
    gt["annotations"].append(
        {"id": 9, "image_id": 1, "category_id": 1, "bbox": [0, 70, 30, 30], "area": 900, "iscrowd": 1}
    )
    dets = [
        _det(1, [10, 10, 20, 20], 0.9),  # 0: finds object 1
        _det(1, [11, 11, 20, 20], 0.8),  # 1: duplicate of object 1
        _det(1, [60, 60, 20, 20], 0.7, cat=2),  # 2: object 2's place, wrong class
        _det(1, [85, 30, 10, 10], 0.6),  # 3: background
        _det(1, [66, 66, 20, 20], 0.5),  # 4: object 2, poorly localised (IoU 196/604 = 0.32)
        _det(1, [2, 72, 20, 20], 0.4),  # 5: inside the crowd region
    ]
    matches = match_detections(gt, dets, iou=0.5)
    outcome = {d["det_index"]: d["outcome"] for d in matches.detections}
    assert outcome == {0: "tp", 1: "fp", 2: "fp", 3: "fp", 4: "fp", 5: "ignored"}
    found = {o["ann_id"]: o["det_index"] for o in matches.objects}
    assert found == {1: 0, 2: -1, 3: -1}  # the crowd region (9) is no object; object 3 (class b) is missed
    assert match_detections(gt, dets, iou=0.3).detections[4]["outcome"] == "tp"  # at IoU 0.3 the loose box counts
    assert [o["ann_id"] for o in match_detections(gt, dets, area="small").objects] == [1, 2, 3]  # all < 32²
    medium = match_detections(gt, dets, area="medium")  # no object that size: every detection is left out
    assert not medium.objects and {d["outcome"] for d in medium.detections} == {"ignored"}
    empty = match_detections(gt, [], iou=0.5)
    assert [o["det_index"] for o in empty.objects] == [-1, -1, -1] and not empty.detections
    with pytest.raises(DetectionsError, match="iou must be in"):
        match_detections(gt, dets, iou=0)


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
