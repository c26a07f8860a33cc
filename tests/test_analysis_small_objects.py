"""The numbers behind the small-object and attribution figures: AP by size equal to the report's and to a fresh
COCOeval of the stored detections, PR curves whose mean is COCO's AP, one-to-one matching on a hand-made case,
and Captum attributions with the properties their methods promise (IG completeness, saliency ≥ 0, Grad-CAM only
on the level a box is pooled from)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from drkd_viz.analysis import attribution as attr
from drkd_viz.analysis import small_objects as so
from drkd_viz.analysis.models import image_and_boxes
from drkd_viz.analysis.models import test_split as open_test_split  # not "test_*": pytest would collect it
from drkd_viz.engine.inference import load_student
from drkd_viz.errors import UserError
from drkd_viz.evaluation import AREA_NAMES, evaluate_detections
from drkd_viz.models.capture import name_levels
from drkd_viz.models.factory import DetectorConfig, build_detector
from drkd_viz.runs.reports import read_report
from drkd_viz.viz.attribution import plot_attributions
from drkd_viz.viz.common import figure_png
from drkd_viz.viz.small_objects import (
    plot_ap_by_size,
    plot_class_gains,
    plot_found_missed,
    plot_image_matches,
    plot_pr_curves,
)

ROLES = ("teacher", "baseline", "drkd")
RUN = {"teacher": "teacher", "baseline": "baseline-s0", "drkd": "drkd-s0", "feature_imitation": "feature_imitation-s0"}
AREA_KEY = dict(zip(AREA_NAMES, ("AP", "APs", "APm", "APl"), strict=True))
# the quick preset's students are barely trained (top scores ~0.1): match them at a low operating point
QUICK_THRESHOLD = 0.05


@pytest.fixture
def artifacts(tmp_path) -> Path:
    folder = Path(os.environ.get("DRKD_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _save(fig, folder: Path, name: str) -> None:
    data = figure_png(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    (folder / name).write_bytes(data)


def _metrics(runs: Path, role: str) -> dict:
    return json.loads((runs / RUN[role] / "eval" / "test" / "metrics.json").read_text())


def _nan_or(value: float) -> float:
    return math.nan if value < 0 else value


# ---- AP by size, PR curves, per-class gains (real runs) -----------------------------------------------------
def test_ap_by_size_is_the_reports_and_the_evaluations(quick_runs, artifacts):
    report = read_report(quick_runs)
    table = so.ap_by_size(report)
    assert set(table["model"]) == set(report["models"]) and set(table["size"]) == set(so.SIZE_KEYS)
    for row in table.itertuples():
        key = so.SIZE_KEYS[row.size]
        np.testing.assert_equal(row.mean, _nan_or(report["models"][row.model]["summary"][key]["mean"]))
        assert row.n == 1 and row.std == 0 and math.isnan(row.ci_low)  # the quick preset has one seed
        # the stored evaluation of the run and a fresh COCOeval of its detections give the same number
        np.testing.assert_equal(row.mean, _nan_or(_metrics(quick_runs, row.model)[key]))
        np.testing.assert_allclose(row.mean, _nan_or(so.evaluation(quick_runs, row.model).stats[key]), atol=1e-15)
        assert row.values == (row.mean,) or math.isnan(row.mean)
    _save(plot_ap_by_size(table), artifacts, "small_objects_ap_by_size.png")


def test_pr_curves_average_to_cocoeval_ap(quick_runs, artifacts):
    curves = so.pr_curves(quick_runs, ROLES)
    assert len(curves) == len(ROLES) * len(AREA_NAMES) * 101
    # independent check with the reference implementation (the stored metrics come from faster-coco-eval)
    gt = quick_runs / "data" / "test" / "annotations.json"
    reference = evaluate_detections(gt, quick_runs / "drkd-s0" / "eval" / "test" / "detections.json", "pycocotools")
    for (model, area), curve in curves.groupby(["model", "area"]):
        precision = curve["precision"].to_numpy()
        stored = _nan_or(_metrics(quick_runs, model)[AREA_KEY[area]])
        # 101-point interpolated precision: its mean over the recall points is COCO's AP for that area
        np.testing.assert_allclose(np.mean(precision), stored, rtol=0, atol=1e-12)
        if model == "drkd":
            np.testing.assert_allclose(np.mean(precision), _nan_or(reference.stats[AREA_KEY[area]]), atol=1e-12)
        if not math.isnan(stored):
            assert np.all(np.diff(precision) <= 1e-12), "interpolated precision never rises with recall"
            assert np.all((precision >= 0) & (precision <= 1))
    at_50 = so.pr_curves(quick_runs, ("drkd",), iou=0.5)
    np.testing.assert_allclose(at_50[at_50["area"] == "all"]["precision"].mean(), reference.stats["AP50"], atol=1e-12)
    with pytest.raises(UserError, match="thresholds"):
        so.pr_curves(quick_runs, ("drkd",), iou=0.52)
    _save(plot_pr_curves(curves, "small"), artifacts, "small_objects_pr_small.png")
    _save(plot_pr_curves(curves, None), artifacts, "small_objects_pr_all_sizes.png")


def test_per_class_gains_are_method_minus_baseline(quick_runs, artifacts):
    report = read_report(quick_runs, "quick")
    gains = so.per_class_gains(report, "drkd")
    per_class = {m: report["models"][m]["per_class"] for m in ("teacher", "baseline", "drkd")}
    assert sorted(gains["class"]) == sorted(per_class["baseline"])
    for _, row in gains.iterrows():
        name = row["class"]
        assert row["baseline_ap"] == per_class["baseline"][name] and row["method_ap"] == per_class["drkd"][name]
        assert row["teacher_ap"] == per_class["teacher"][name]
        assert row["gain"] == pytest.approx(row["method_ap"] - row["baseline_ap"], abs=1e-15)
    assert list(gains["gain"]) == sorted(gains["gain"], reverse=True)
    with pytest.raises(UserError, match="no 'pr_only' model"):
        so.per_class_gains(report, "pr_only")
    _save(plot_class_gains(gains), artifacts, "small_objects_class_gains.png")


# ---- matching objects: a hand-made case ------------------------------------------------------------------------
def _hand_made_runs(root: Path) -> Path:
    """Two images; detections chosen so each rule of the matching decides one object."""
    gt = {
        "images": [
            {"id": 1, "width": 100, "height": 100, "file_name": "a.png"},
            {"id": 2, "width": 100, "height": 100, "file_name": "b.png"},
        ],
        "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 10, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [40, 40, 8, 8], "area": 64, "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 2, "bbox": [0, 50, 50, 40], "area": 2000, "iscrowd": 0},
            {"id": 13, "image_id": 1, "category_id": 1, "bbox": [70, 70, 20, 20], "area": 400, "iscrowd": 1},
            # two neighbours and one detection between them: it goes to the one it overlaps most
            {"id": 20, "image_id": 2, "category_id": 2, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 21, "image_id": 2, "category_id": 2, "bbox": [16, 10, 20, 20], "area": 400, "iscrowd": 0},
        ],
    }
    dets = {
        "drkd": [
            {"image_id": 1, "category_id": 1, "bbox": [10, 10, 10, 10], "score": 0.9},  # finds 10 (IoU 1)
            {"image_id": 1, "category_id": 1, "bbox": [11, 11, 10, 10], "score": 0.8},  # duplicate: 10 is taken
            {"image_id": 1, "category_id": 2, "bbox": [40, 40, 8, 8], "score": 0.95},  # right place, wrong class
            {"image_id": 1, "category_id": 2, "bbox": [0, 50, 50, 40], "score": 0.3},  # below the threshold
            {"image_id": 1, "category_id": 1, "bbox": [70, 70, 20, 20], "score": 0.99},  # on the crowd region
            {"image_id": 2, "category_id": 2, "bbox": [14, 10, 20, 20], "score": 0.7},  # IoU .82 with 21, .67 with 20
        ],
        "baseline": [
            {"image_id": 1, "category_id": 1, "bbox": [41, 41, 8, 8], "score": 0.7},  # finds 11: IoU 49/79 = 0.62
            {"image_id": 1, "category_id": 1, "bbox": [14, 14, 10, 10], "score": 0.9},  # IoU 36/164 with 10: no
        ],
    }
    (root / "data" / "test").mkdir(parents=True)
    (root / "data" / "test" / "annotations.json").write_text(json.dumps(gt))
    for role, found in dets.items():
        (root / RUN[role] / "eval" / "test").mkdir(parents=True)
        (root / RUN[role] / "config.yaml").write_text("# hand-made test run\n")
        (root / RUN[role] / "eval" / "test" / "detections.json").write_text(json.dumps(found))
    return root


def test_match_objects_on_a_hand_made_case(tmp_path):
    runs = _hand_made_runs(tmp_path / "runs")
    drkd = so.match_objects(runs, "drkd", iou=0.5, score_threshold=0.5).set_index("ann_id")
    assert list(drkd.index) == [10, 11, 12, 20, 21]  # crowd region 13 is not an object to find
    assert drkd.loc[10, "found"] and drkd.loc[10, "score"] == 0.9 and drkd.loc[10, "iou"] == 1.0
    assert not drkd.loc[11, "found"] and math.isnan(drkd.loc[11, "score"])  # only a wrong-class detection
    assert not drkd.loc[12, "found"]  # its detection scores 0.3 < 0.5
    assert drkd.loc[21, "found"] and not drkd.loc[20, "found"]  # one detection finds one object: the closer one
    assert drkd.loc[21, "iou"] == pytest.approx(18 * 20 / (2 * 400 - 18 * 20), abs=1e-12)
    assert list(drkd["size"]) == ["small", "small", "medium", "small", "small"]
    assert list(drkd["category"]) == ["circle", "circle", "square", "square", "square"]
    lower = so.match_objects(runs, "drkd", iou=0.5, score_threshold=0.25).set_index("ann_id")
    assert lower.loc[12, "found"] and lower.loc[12, "score"] == 0.3
    strict = so.match_objects(runs, "drkd", iou=0.85, score_threshold=0.5).set_index("ann_id")
    assert strict["found"].tolist() == [True, False, False, False, False]  # 0.82 < 0.85
    baseline = so.match_objects(runs, "baseline", score_threshold=0.5).set_index("ann_id")
    assert baseline["found"].tolist() == [False, True, False, False, False]

    both = so.found_vs_missed(runs, size="small", score_threshold=0.5)
    assert sorted(zip(both["case"], both["ann_id"], strict=True)) == [
        ("baseline found, drkd missed", 11),
        ("drkd found, baseline missed", 10),
        ("drkd found, baseline missed", 21),
    ]
    assert both["teacher_found"].isna().all()  # no teacher run in this folder
    assert so.found_vs_missed(runs, size="medium", score_threshold=0.5).empty
    with pytest.raises(UserError, match="no teacher run 'teacher'"):
        so.match_objects(runs, "teacher")
    with pytest.raises(UserError, match="size must be one of"):
        so.found_vs_missed(runs, size="tiny")
    with pytest.raises(UserError, match="no report"):
        read_report(runs)


def test_found_vs_missed_on_real_runs_lists_both_directions(quick_runs, artifacts):
    rows = so.found_vs_missed(quick_runs, size="small", score_threshold=QUICK_THRESHOLD)
    drkd = so.match_objects(quick_runs, "drkd", score_threshold=QUICK_THRESHOLD)
    base = so.match_objects(quick_runs, "baseline", score_threshold=QUICK_THRESHOLD)
    small = drkd["size"] == "small"
    gained = set(drkd["ann_id"][small & drkd["found"] & ~base["found"]])
    lost = set(drkd["ann_id"][small & ~drkd["found"] & base["found"]])
    assert set(rows["ann_id"][rows["case"] == "drkd found, baseline missed"]) == gained
    assert set(rows["ann_id"][rows["case"] == "baseline found, drkd missed"]) == lost
    assert (rows["size"] == "small").all() and rows["teacher_found"].isin([True, False]).all()
    gt = json.loads((quick_runs / "data" / "test" / "annotations.json").read_text())
    assert len(drkd) == sum(not a.get("iscrowd", 0) for a in gt["annotations"])

    dataset = open_test_split(quick_runs)
    _save(plot_found_missed(dataset, rows, limit=6), artifacts, "small_objects_found_missed.png")
    image_id = int(rows["image_id"].iloc[0]) if len(rows) else dataset.ids[0]
    image, _, _ = image_and_boxes(dataset, dataset.ids.index(image_id))
    matches = {r: so.match_objects(quick_runs, r, score_threshold=QUICK_THRESHOLD) for r in ROLES}
    dets = {r: so.image_detections(quick_runs, r, image_id, score_threshold=QUICK_THRESHOLD) for r in ROLES}
    assert all((d["score"] >= QUICK_THRESHOLD).all() and d["score"].is_monotonic_decreasing for d in dets.values())
    _save(plot_image_matches(image, image_id, matches, dets, "small"), artifacts, "small_objects_image_matches.png")


# ---- attribution ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def attribution_case(quick_runs):
    """The DRKD student, a test image and the ground-truth box whose score a black image changes most
    (completeness is then a statement about a difference well above float noise)."""
    model, _ = load_student(quick_runs / "drkd-s0")
    dataset = open_test_split(quick_runs)
    best = None
    for index in (0, 1):
        image, boxes, labels = image_and_boxes(dataset, index)
        for box, label in zip(boxes[:6], labels[:6], strict=True):
            score = attr.box_score_function(model, box, int(label))
            with torch.no_grad():
                change = score(torch.stack([image, torch.zeros_like(image)])).diff().abs().item()
            if best is None or change > best[0]:
                best = (change, image, box, int(label))
    return model, dataset, *best[1:]


def test_attribution_maps_have_the_image_shape_and_their_signs(attribution_case):
    model, _, image, box, label = attribution_case
    maps = {m: attr.attribute(model, image, box, label, m, steps=8) for m in attr.METHODS}
    for name, heat in maps.items():
        assert heat.shape == tuple(image.shape[-2:]) and np.isfinite(heat).all(), name
    assert (maps["saliency"] >= 0).all() and maps["saliency"].max() > 0
    assert (maps["gradcam"] >= 0).all()
    assert (maps["integrated_gradients"] != 0).any()
    with pytest.raises(UserError, match="unknown attribution method"):
        attr.attribute(model, image, box, label, "occlusion")
    with pytest.raises(UserError, match="foreground class label"):
        attr.attribute(model, image, box, 0, "saliency")
    with pytest.raises(UserError, match="outside"):
        attr.attribute(model, image, box + 1000, label, "saliency")


def test_integrated_gradients_completeness(attribution_case):
    model, _, image, box, label = attribution_case
    total, difference = attr.ig_completeness(model, image, box, label, steps=128)
    assert abs(difference) > 5e-3, "pick a box whose score the black baseline changes, else the test is vacuous"
    # Gauss–Legendre quadrature of a piecewise-smooth (ReLU) path: at 128 points the measured error on these
    # models is ≤ 1 % of the difference; allow 5 % plus 5e-4 absolute
    assert abs(total - difference) <= 0.05 * abs(difference) + 5e-4, (total, difference)


def test_gradcam_lives_on_the_level_the_box_is_pooled_from(attribution_case):
    from captum.attr import LayerGradCam

    model, _, image, box, label = attribution_case
    level = attr.box_level(model, image, box)
    score = attr.box_score_function(model, box, label)
    for name in ("P2", "P3", "P4", "P5"):
        cam = LayerGradCam(score, attr.level_module(model, name))
        raw = cam.attribute(image[None].clone().requires_grad_(), relu_attributions=False)
        # FPN outputs do not feed one another: only the pooled level carries gradient
        assert (raw.abs().max().item() > 0) == (name == level), name


@pytest.mark.parametrize("family", ["faster_rcnn", "retinanet"])
def test_level_modules_output_the_named_levels(family):
    torch.manual_seed(0)
    cfg = DetectorConfig(family=family, backbone="resnet10", num_classes=4, fpn_channels=32, min_size=96, max_size=128)
    model = build_detector(cfg).eval()
    if family == "retinanet":  # at initialisation its logits are the prior bias alone: give the score some signal
        for module in model.head.classification_head.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.normal_(module.weight, std=0.1)
                torch.nn.init.zeros_(module.bias)
    x = torch.rand(1, 3, 96, 128)
    seen = {}
    modules = {}
    for level in cfg.levels:
        try:
            modules[level] = attr.level_module(model, level)
        except UserError as exc:
            assert family == "faster_rcnn" and level == "P6" and "max-pool" in str(exc)
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: seen.__setitem__(k, o)) for k, m in modules.items()]
    with torch.no_grad():
        named = name_levels(model.backbone(x), x.shape[-2])
    for hook in hooks:
        hook.remove()
    assert list(named) == cfg.levels
    for level in modules:
        assert seen[level] is named[level], level
    image, box = torch.rand(3, 100, 120), torch.tensor([10.0, 20.0, 40.0, 44.0])
    assert attr.box_level(model, image, box) in modules
    maps = {method: attr.attribute(model, image, box, 2, method, steps=4) for method in attr.METHODS}
    assert all(heat.shape == (100, 120) and np.isfinite(heat).all() for heat in maps.values())
    assert maps["saliency"].max() > 0 and (maps["gradcam"] >= 0).all()


def test_attribution_figure_for_three_models(quick_runs, attribution_case, artifacts):
    _, dataset, image, box, label = attribution_case
    models = {role: load_student(quick_runs / RUN[role])[0] for role in ROLES}
    maps = attr.attribute_models(models, image, box, label, steps=8)
    assert list(maps) == list(ROLES) and all(list(m) == list(attr.METHODS) for m in maps.values())
    scores = attr.box_scores(models, image, box, label)
    assert all(0 <= s <= 1 for s in scores.values())
    level = attr.box_level(models["drkd"], image, box)
    fig = plot_attributions(image, maps, box, scores, dataset.class_names[label], level)
    _save(fig, artifacts, "attribution_three_models.png")
    _save(plot_attributions(image, maps, box, scores, dataset.class_names[label], level, context=4.0), artifacts,
          "attribution_three_models_zoom.png")  # fmt: skip


def test_training_mode_is_refused():
    model = build_detector(DetectorConfig(backbone="resnet10", num_classes=3, fpn_channels=32, min_size=64))
    with pytest.raises(UserError, match="training mode"):
        attr.box_score_function(model.train(), torch.tensor([1.0, 1.0, 9.0, 9.0]), 1)
