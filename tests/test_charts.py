"""The interactive charts are valid Vega-Lite (Altair validates the spec against its schema in to_dict) and
carry the values people hover for."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from drkd_viz.analysis.detection_errors import error_gains
from drkd_viz.tide import ERROR_TYPES, SPECIAL_TYPES, Confusion, error_breakdown
from drkd_viz.viz import charts
from drkd_viz.viz.common import ROLE_COLORS


def _table() -> pd.DataFrame:
    gt = {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 20], "area": 400, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "a"}],
    }
    rows = []
    for model, seed, dets in (
        ("baseline", 0, [[70, 5, 10, 10], [10, 10, 20, 20]]),
        ("baseline", 1, [[10, 10, 20, 20]]),
        ("drkd", 0, [[10, 10, 20, 20], [60, 60, 20, 20]]),
        ("drkd", 1, [[10, 10, 20, 20], [62, 62, 20, 20]]),
    ):
        results = [{"image_id": 1, "category_id": 1, "bbox": b, "score": 0.9 - 0.1 * i} for i, b in enumerate(dets)]
        for size, result in error_breakdown(gt, results).items():
            for kind in (*ERROR_TYPES, *SPECIAL_TYPES):
                rows.append(
                    {
                        "model": model,
                        "seed": seed,
                        "size": size,
                        "error": kind,
                        "recovered": result.recovered[kind],
                        "count": result.counts.get(kind, np.nan),
                        "ap": result.ap,
                    }
                )
    return pd.DataFrame(rows)


def test_error_charts_are_valid_and_carry_their_numbers():
    table = _table()
    spec = charts.error_breakdown_chart(table, "small", selectable=True).to_dict()
    assert spec["params"][0]["name"] == charts.SELECT_ERROR
    values = next(iter(spec["datasets"].values()))
    assert {"model", "error", "AP points", "count"} <= set(values[0])
    assert len(values) == 2 * len(ERROR_TYPES)  # two models, six types
    gains = error_gains(table)
    spec = charts.error_gains_chart(gains, "small").to_dict()
    text = json.dumps(spec)
    assert "95 % CI low" in text and "difference" in text


def test_confusion_and_size_and_curve_charts_are_valid():
    confusion = Confusion(["a", "b", "background"], np.array([[3, 1, 1], [0, 2, 2], [4, 1, 0]]))
    assert "share of the row" in json.dumps(charts.confusion_chart(confusion).to_dict(), ensure_ascii=False)
    assert "share − baseline's" in json.dumps(
        charts.confusion_chart(confusion, confusion).to_dict(), ensure_ascii=False
    )
    frame = pd.DataFrame(
        [
            {"model": m, "size": z, "mean": 0.3, "std": 0.01, "ci_low": 0.2, "ci_high": 0.4, "n": 3, "values": (0.3,)}
            for m in ("baseline", "drkd")
            for z in ("all", "small", "medium", "large")
        ]
    )
    charts.ap_by_size_chart(frame).to_dict()
    recall = np.linspace(0, 1, 101)
    curves = pd.concat(
        pd.DataFrame({"model": m, "area": "small", "iou": "0.50", "recall": recall, "precision": 1 - recall * k})
        for k, m in ((0.5, "baseline"), (0.3, "drkd"))
    )
    assert "transform" in json.dumps(charts.pr_curves_chart(curves, "small").to_dict())
    logged = pd.DataFrame({"loss": [3.0, 2.0, 1.5], "loss_pr": [0.5, 0.3, 0.2]}, index=pd.Index([10, 20, 30]))
    spec = charts.training_curves_chart({"drkd-s0": logged}, ["loss", "loss_pr"], smooth=2, log_scale=True).to_dict()
    assert spec["resolve"]["scale"]["y"] == "independent" and '"log"' in json.dumps(spec)
    # runs named <role>-s<seed>, one per role, take their role's colour; two seeds of one role cannot
    two = {"baseline-s0": logged, "drkd-s0": logged}
    scale = charts.training_curves_chart(two, ["loss"]).to_dict()["spec"]["layer"][0]["encoding"]["color"]["scale"]
    assert scale == {"domain": ["baseline-s0", "drkd-s0"], "range": [ROLE_COLORS["baseline"], ROLE_COLORS["drkd"]]}
    seeds = charts.training_curves_chart({"drkd-s0": logged, "drkd-s1": logged}, ["loss"]).to_dict()
    assert "scale" not in seeds["spec"]["layer"][0]["encoding"]["color"]
