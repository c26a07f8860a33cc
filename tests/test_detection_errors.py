"""TIDE's error types, the AP each fix gives back, the confusion matrix and the image-level comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drkd_viz.evaluation import AREA_NAMES, evaluate_detections, perturbed_detections
from drkd_viz.tide import (
    ERROR_TYPES,
    SPECIAL_TYPES,
    confusion_matrix,
    error_breakdown,
)


def _gt(objects: list[tuple[list[float], int]], crowd: list[list[float]] = ()) -> dict:
    anns = [
        {"id": i + 1, "image_id": 1, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
        for i, (b, c) in enumerate(objects)
    ]
    for box in crowd:
        anns.append(
            {"id": len(anns) + 1, "image_id": 1, "category_id": 1, "bbox": box, "area": box[2] * box[3], "iscrowd": 1}
        )
    return {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 100, "height": 100}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }


def _det(box, score, cat=1):
    return {"image_id": 1, "category_id": cat, "bbox": box, "score": score}


# one image with every kind of outcome (objects 1, 2 of class a, 3 of class b; a crowd region of class a)
CASE_GT = _gt([([10, 10, 20, 20], 1), ([60, 60, 20, 20], 1), ([40, 5, 10, 10], 2)], crowd=[[0, 70, 30, 30]])
CASE_DETS = [
    _det([10, 10, 20, 20], 0.9),  # 0: finds object 1
    _det([11, 11, 20, 20], 0.8),  # 1: duplicate of object 1
    _det([60, 60, 20, 20], 0.7, cat=2),  # 2: object 2's place, wrong class -> classification
    _det([85, 30, 10, 10], 0.6),  # 3: overlaps nothing -> background
    _det([66, 66, 20, 20], 0.5),  # 4: object 2, poorly localised (IoU 0.32) -> localisation
    _det([2, 72, 20, 20], 0.4),  # 5: inside the crowd region -> ignored
    _det([66, 66, 20, 20], 0.3, cat=2),  # 6: wrong class and a poor box -> both
]


def test_each_error_type_on_hand_made_cases():
    result = error_breakdown(CASE_GT, CASE_DETS)["all"]
    outcome = dict(zip(result.detections["det_index"], result.detections["outcome"], strict=True))
    assert outcome == {0: "tp", 1: "dupe", 2: "cls", 3: "bkg", 4: "loc", 5: "ignored", 6: "both"}
    target = dict(zip(result.detections["det_index"], result.detections["target"], strict=True))
    assert (target[0], target[1], target[2], target[4]) == (1, 1, 2, 2)
    objects = dict(zip(result.objects["ann_id"], result.objects["outcome"], strict=True))
    # object 2 is the aim of a classification (0.7) and a localisation error (0.5): the higher-scored one names it;
    # object 3 was never aimed at, so it is missed; the crowd region (4) is no object
    assert objects == {1: "found", 2: "cls", 3: "miss"}
    assert result.counts == {"cls": 1, "loc": 1, "both": 1, "dupe": 1, "bkg": 1, "miss": 1}


def test_the_ap_each_fix_gives_back_by_hand():
    """Class a: tp 0.9, then false positives; recall 1/2 at precision 1 -> AP 51/101. Class b has no true positive."""
    result = error_breakdown(CASE_GT, CASE_DETS)["all"]
    half = 51 / 101
    assert result.ap == pytest.approx(half / 2, abs=1e-12)
    assert result.ap == pytest.approx(evaluate_detections(CASE_GT, CASE_DETS).stats["AP50"], abs=1e-12)
    # fixing the classification error turns detection 2 into a true positive of class a at 0.7: recall 1 at 2/3
    assert result.recovered["cls"] == pytest.approx((50 / 101) * (2 / 3) / 2, abs=1e-12)
    # the localisation error aims at the object the higher-scored classification error already claims (TIDE's
    # BestGTMatch): fixed alone it is dropped, and dropping a false positive below the last tp changes nothing
    assert result.recovered["loc"] == 0
    assert result.recovered["dupe"] == result.recovered["bkg"] == result.recovered["both"] == 0
    assert result.recovered["miss"] == 0  # class b's only object removed: a class with nothing left scores 0
    # perfect recall without changing precision: both of class a's objects count as found -> AP a = 1
    assert result.recovered["false_negatives"] == pytest.approx((1 - half) / 2, abs=1e-12)


def test_a_background_error_ranked_first_costs_half_the_ap():
    gt = _gt([([10, 10, 20, 20], 1)])
    result = error_breakdown(gt, [_det([70, 70, 10, 10], 0.9), _det([10, 10, 20, 20], 0.8)])["all"]
    assert result.ap == pytest.approx(0.5, abs=1e-12)
    assert result.recovered["bkg"] == pytest.approx(0.5, abs=1e-12)
    assert result.recovered["false_positives"] == pytest.approx(0.5, abs=1e-12)


def test_a_missed_object_fixed_is_removed_from_the_ground_truth():
    gt = _gt([([10, 10, 20, 20], 1), ([60, 60, 20, 20], 1)])
    result = error_breakdown(gt, [_det([10, 10, 20, 20], 0.9)])["all"]
    assert result.counts["miss"] == 1
    assert result.recovered["miss"] == pytest.approx(1 - 51 / 101, abs=1e-12)


def test_a_fixed_localisation_error_becomes_a_true_positive():
    gt = _gt([([10, 10, 20, 20], 1)])
    result = error_breakdown(gt, [_det([16, 16, 20, 20], 0.9)])["all"]  # IoU 196/604
    assert result.counts["loc"] == 1 and result.ap == 0
    assert result.recovered["loc"] == pytest.approx(1.0, abs=1e-12)
    assert result.counts["miss"] == 0  # the object is the localisation error's aim, not a miss


def test_sizes_follow_cocoevals_area_ranges():
    # a small object (10x10) and a medium one (40x40) of class a; a small box near the medium one's corner
    gt = _gt([([5, 5, 10, 10], 1), ([50, 50, 40, 40], 1)])
    dets = [_det([5, 5, 10, 10], 0.9), _det([52, 52, 20, 20], 0.8)]
    by_size = error_breakdown(gt, dets)
    assert set(by_size) == set(AREA_NAMES)
    assert by_size["all"].detections["outcome"].tolist() == ["tp", "loc"]  # IoU 400/1600 with the medium one
    # in the small table the medium object is not counted, so the box is not aimed at an object of the range,
    # yet it overlaps one: "both", not background
    assert by_size["small"].detections["outcome"].tolist() == ["tp", "both"]
    # in the medium table both boxes are small and unmatched, so COCOeval leaves them out, and the medium object
    # is missed
    assert by_size["medium"].detections["outcome"].tolist() == ["ignored", "ignored"]
    assert by_size["medium"].objects["outcome"].tolist() == ["miss"]
    assert np.isnan(by_size["large"].ap) and by_size["large"].objects.empty


@pytest.mark.parametrize("seed", [0, 1])
def test_the_ap_before_fixing_is_cocoevals_ap50_on_real_coco(mini_coco, seed):
    """Real COCO photos (crowd regions included), every size: the breakdown starts from COCOeval's AP50, and every
    ranked false positive gets exactly one error type."""
    gt = json.loads((mini_coco / "annotations.json").read_text())
    dets = perturbed_detections(gt, seed=seed)
    reference = evaluate_detections(gt, dets, backend="pycocotools")
    by_size = error_breakdown(gt, dets)
    for area, result in by_size.items():
        expected = reference.precision[0, :, :, AREA_NAMES.index(area), -1]
        per_class = [expected[:, k].mean() for k in range(expected.shape[1]) if (expected[:, k] > -1).all()]
        assert result.ap == pytest.approx(float(np.mean(per_class)), abs=1e-12), area
        outcomes = set(result.detections["outcome"])
        assert outcomes <= {"tp", "ignored", *ERROR_TYPES[:-1]}
        assert all(result.recovered[k] >= 0 for k in ERROR_TYPES)
        assert set(result.recovered) == {*ERROR_TYPES, *SPECIAL_TYPES}
        # perfect precision and perfect recall each give back at least what any single false-positive or
        # missed-object type does
        assert result.recovered["false_positives"] >= max(result.recovered[k] for k in ("dupe", "bkg", "both")) - 1e-12
        assert result.recovered["false_negatives"] >= result.recovered["miss"] - 1e-12


def test_confusion_matrix_on_a_hand_made_case():
    confusion = confusion_matrix(CASE_GT, CASE_DETS, score_threshold=0.25)
    assert confusion.labels == ["a", "b", "background"]
    # rows: true a, true b, background; columns: said a, said b, said nothing
    assert confusion.counts.tolist() == [[1, 1, 0], [0, 0, 1], [3, 1, 0]]
    np.testing.assert_allclose(confusion.normalised(), [[0.5, 0.5, 0], [0, 0, 1], [0.75, 0.25, 0]])
    strict = confusion_matrix(CASE_GT, CASE_DETS, score_threshold=0.75)  # only detections 0 and 1
    assert strict.counts.tolist() == [[1, 0, 1], [0, 0, 1], [1, 0, 0]]
    assert confusion.table().loc["a", "b"] == 0.5


def test_a_reports_error_table_gains_and_images(quick_runs):
    """On the quick pipeline's runs: the breakdown starts from each run's stored AP50, the gains are the paired
    differences, the image ranking agrees with the found / missed gallery, and the report carries the table."""
    from drkd_viz.analysis.detection_errors import error_gains, error_table, image_changes
    from drkd_viz.analysis.small_objects import found_vs_missed
    from drkd_viz.runs.reports import read_report

    report = read_report(quick_runs, "quick")
    table = error_table(quick_runs, report)
    assert set(table["model"]) == set(report["models"])
    for model, entry in report["models"].items():
        ap = table[(table["model"] == model) & (table["size"] == "all")]["ap"].iloc[0]
        assert ap == pytest.approx(entry["per_seed"]["0"]["AP50"], abs=1e-9), model
    gains = error_gains(table)
    pick = {"size": "small", "error": "miss"}
    row = gains[(gains["model"] == "drkd") & (gains["size"] == pick["size"]) & (gains["error"] == pick["error"])]
    mine = table[(table["model"] == "drkd") & (table["size"] == "small") & (table["error"] == "miss")]["recovered"]
    base = table[(table["model"] == "baseline") & (table["size"] == "small") & (table["error"] == "miss")]["recovered"]
    assert row["difference"].iloc[0] == pytest.approx(mine.iloc[0] - base.iloc[0], abs=1e-12)
    assert not {"baseline", "teacher"} & set(gains["model"])

    changes = image_changes(quick_runs, "drkd", report=report, score_threshold=0.05)
    net = changes["found"] - changes["lost"] - changes["fp_added"] + changes["fp_removed"]
    assert (changes["net"] == net).all() and changes["change"].is_monotonic_decreasing
    gallery = found_vs_missed(quick_runs, size="all", method="drkd", score_threshold=0.05, report=report)
    assert changes["found"].sum() == (gallery["case"] == "drkd found, baseline missed").sum()
    assert changes["lost"].sum() == (gallery["case"] == "baseline found, drkd missed").sum()

    section = report["errors"]
    stored = section["models"]["drkd"]["small"]["miss"]["recovered"]
    assert stored == pytest.approx(mine.iloc[0], abs=1e-12)
    assert section["vs_baseline"]["drkd"]["small"]["miss"]["mean"] == pytest.approx(row["difference"].iloc[0])
    markdown = (quick_runs / "reports" / "quick" / "report.md").read_text()
    assert "## Where AP50 goes (TIDE error types" in markdown
