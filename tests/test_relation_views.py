"""The relation views' own logic on hand-made inputs: the class-then-size order, the class blocks, per-image relation
metrics, the chart data and specs (selections, tooltips, scales), the report-side frames and the sentences that
read them, and the tables' empty cells."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drkd_viz.analysis.instances import InstanceRelations, area_order, image_relation_metrics
from drkd_viz.analysis.pixel import AffinityMaps, affinity_grid
from drkd_viz.experiments.relation_report import (
    agreement_sentence,
    controls_frame,
    controls_sentence,
    relation_metric_frame,
)
from drkd_viz.viz import pixel_charts as pc
from drkd_viz.viz import relation_charts as rc

CLASSES = ["__background__", "circle", "square", "star"]


def relations_of(matrix: np.ndarray, labels: list[int], sizes: list[str], role: str = "teacher") -> InstanceRelations:
    n = len(labels)
    return InstanceRelations(
        role=role,
        level="P2",
        order=np.arange(n),
        boxes=np.tile([0.0, 0.0, 10.0, 10.0], (n, 1)),
        areas=np.full(n, 100.0),
        sizes=sizes,
        matrix=matrix,
        filter=None,
        source="parameter-free",
        labels=np.array(labels),
    )


def block_matrix(labels: list[int], inside: float = 0.9) -> np.ndarray:
    """Rows that put ``inside`` on the instance's own class, the rest spread over the others."""
    labels_a = np.array(labels)
    n = len(labels)
    m = np.zeros((n, n))
    for i in range(n):
        same = (labels_a == labels_a[i]) & (np.arange(n) != i)
        other = ~same & (np.arange(n) != i)
        m[i, same] = inside / max(same.sum(), 1) if other.any() else 1 / same.sum()
        if other.any():
            m[i, other] = (1 - inside if same.any() else 1) / other.sum()
    return m


def test_order_is_class_then_largest_first():
    areas = np.array([10.0, 50.0, 30.0, 40.0, 20.0])
    labels = np.array([2, 1, 2, 1, 3])
    order = area_order(areas, labels)
    assert order.tolist() == [1, 3, 2, 0, 4]  # class 1 (50, 40), class 2 (30, 10), class 3 (20)
    assert area_order(areas).tolist() == [1, 3, 2, 4, 0]


def test_class_blocks():
    assert rc.class_blocks(np.array([1, 1, 2, 3, 3, 3])) == [(0, 2), (3, 6)]
    assert rc.class_blocks(np.array([1, 2, 3])) == []  # runs of one outline nothing
    assert rc.class_blocks(None) == []


def test_image_metrics_on_hand_made_matrices():
    labels = [1, 1, 2, 2, 3]
    sizes = ["small", "small", "medium", "large", "small"]
    teacher = relations_of(block_matrix(labels), labels, sizes)
    uniform = np.full((5, 5), 0.25)
    np.fill_diagonal(uniform, 0)
    student = relations_of(uniform, labels, sizes, role="baseline")
    frame = image_relation_metrics({"teacher": teacher, "baseline": student}).set_index("role")
    assert frame.loc["teacher", "auc"] == pytest.approx(1.0)  # same-class pairs always ranked above the others
    assert frame.loc["baseline", "auc"] == pytest.approx(0.5)  # a uniform row ranks nothing
    assert frame.loc["baseline", "entropy"] == pytest.approx(1.0)  # uniform rows: the largest entropy
    assert frame.loc["teacher", "entropy"] < 0.9
    l1 = np.abs(uniform - teacher.matrix).sum(1)
    assert frame.loc["baseline", "l1 small"] == pytest.approx(l1[[0, 1, 4]].mean())
    assert frame.loc["baseline", "l1 large"] == pytest.approx(l1[3])
    assert frame.loc["baseline", "l1 all"] == pytest.approx(l1.mean())
    assert np.isnan(frame.loc["teacher", "l1 all"])


def test_relation_cells_and_chart_spec():
    labels = [1, 1, 2, 3, 3, 3]
    sizes = ["large", "small", "medium", "small", "small", "large"]
    rel = {
        "teacher": relations_of(block_matrix(labels), labels, sizes),
        "drkd": relations_of(block_matrix(labels, 0.6), labels, sizes, role="drkd"),
    }
    cells = rc.relation_cells(rel, CLASSES)
    assert len(cells) == 2 * 6 * 5  # the diagonal is left out
    first = cells[(cells["role"] == "teacher") & (cells["row"] == 0) & (cells["col"] == 1)].iloc[0]
    assert first["row_label"] == "#0 circle L" and first["col_label"] == "#1 circle S" and first["same_class"]
    assert first["value"] == pytest.approx(rel["teacher"].matrix[0, 1])
    spec = rc.relation_matrices_chart(rel, CLASSES, highlight=2).to_dict()
    params = {p["name"] for p in spec.get("params", [])}
    assert {rc.SELECT_PAIR, rc.SELECT_INSTANCE} <= params
    text = str(spec)
    assert "'type': 'sqrt'" in text and "viridis" in text and "A_ij" in text
    assert "#ffd700" in text  # the highlighted row
    # two class blocks (circles, stars) outlined, and the highlighted row
    outlines = {
        (r["x"], r["x2"], r["y"], r["y2"])
        for d in spec["datasets"].values()
        for r in d
        if set(r) == {"x", "x2", "y", "y2"}
    }
    assert outlines == {(0, 2, 0, 2), (3, 6, 3, 6), (0, 6, 2, 3)}


def test_affinity_cells_and_charts():
    grid = (3, 4)
    p = 12
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(p, 5))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    teacher = unit @ unit.T
    maps = AffinityMaps("P3", grid, {"teacher": teacher, "drkd": teacher * 0.5}, np.array([[0.5, 0.5, 2.0, 1.5]]))
    cells = pc.affinity_cells(maps, (1, 2))
    assert len(cells) == 2 * p
    drkd = cells[cells["role"] == "drkd"]
    np.testing.assert_allclose(drkd["affinity"], teacher[6] * 0.5)
    np.testing.assert_allclose(drkd["difference"], -teacher[6] * 0.5)
    assert cells[(cells["role"] == "teacher") & (cells["row"] == 1) & (cells["col"] == 2)]["affinity"].iloc[0] == (
        pytest.approx(1.0)
    )
    image = np.zeros((30, 40, 3))
    picker = pc.pixel_picker_chart(image, maps, (1, 2)).to_dict()
    assert pc.SELECT_PIXEL in {p["name"] for p in picker.get("params", [])}
    assert "data:image/png;base64," in str(picker)
    chart = pc.pixel_affinity_chart(image, maps, (1, 2)).to_dict()
    assert "viridis" in str(chart) and "redblue" in str(chart) and "jet" not in str(chart)
    assert affinity_grid((30, 40), 8) == (6, 8) and affinity_grid((40, 30), 8) == (8, 6)


def test_selected_reads_a_streamlit_event():
    event = {"selection": {rc.SELECT_PAIR: [{"role": "drkd", "row": 2, "col": 0}], rc.SELECT_INSTANCE: []}}
    assert rc.selected(event, rc.SELECT_PAIR) == {"role": "drkd", "row": 2, "col": 0}
    assert rc.selected(event, rc.SELECT_INSTANCE) is None
    assert rc.selected(None, rc.SELECT_PAIR) is None


def _gain(mean: float, low: float | None, high: float | None, n: int = 5) -> dict:
    return {"n": n, "mean": mean, "std": 0.01, "ci95": [low, high]}


def test_controls_frame_chart_and_sentence():
    models = {
        "baseline": {},
        "feature_imitation": {"gain_over_baseline": {"AP": _gain(0.14, 0.12, 0.16), "APs": _gain(0.15, 0.1, 0.2)}},
        "relation": {"gain_over_baseline": {"AP": _gain(0.137, 0.11, 0.16), "APs": _gain(0.14, 0.1, 0.2)}},
        "relation_rotate": {"gain_over_baseline": {"AP": _gain(0.146, 0.12, 0.17), "APs": _gain(0.14, 0.1, 0.2)}},
        "fi_rotate": {"gain_over_baseline": {"AP": _gain(-0.17, -0.2, -0.14), "APs": _gain(-0.2, -0.3, -0.1)}},
        "relation_shuffle": {"gain_over_baseline": {"AP": _gain(-0.14, -0.2, -0.1), "APs": _gain(-0.1, -0.2, 0)}},
    }
    frame = controls_frame({"models": models})
    assert set(frame["model"]) == set(models) - {"baseline"}
    row = frame[(frame["model"] == "relation") & (frame["metric"] == "AP")].iloc[0]
    assert row["gain"] == pytest.approx(13.7) and row["ci_low"] == pytest.approx(11.0) and row["keeps"] == "relations"
    sentence = controls_sentence({"models": models})
    assert sentence.startswith("Relations alone gain +13.7 AP over the baseline")
    assert "+14.6 with the teacher's features rotated" in sentence
    assert "feature imitation falls from +14.0 to -17.0" in sentence
    assert "what the targets say carries the gain, and a wrong target harms" in sentence and "(5 seeds" in sentence
    spec = rc.controls_chart(frame, "AP").to_dict()
    assert "What relations add" in str(spec)
    assert controls_frame({"models": {"baseline": {}}}).empty
    assert controls_sentence({"models": {"baseline": {}}}) is None


def test_relation_metric_frame_and_agreement_sentence():
    report = {
        "relations": {
            "levels": ["P2", "P3"],
            "auc": {
                "teacher": {"P2": {"per_seed": {"0": 0.76, "1": 0.76}}},
                "drkd": {"P2": {"per_seed": {"0": 0.74, "1": 0.76}}},
            },
            "agreement": {
                "drkd": {"P2": {"small": {"row_l1": {"per_seed": {"0": 0.2, "1": 0.22}}}}},
                "feature_imitation": {"P2": {"small": {"row_l1": {"per_seed": {"0": 0.3, "1": 0.38}}}}},
            },
        }
    }
    frame = relation_metric_frame(report)
    auc = frame[(frame["metric"] == "auc") & (frame["model"] == "drkd")].iloc[0]
    assert auc["mean"] == pytest.approx(0.75) and auc["seeds"] == 2 and auc["ci_low"] < 0.75 < auc["ci_high"]
    assert agreement_sentence(report) == (
        "The DRKD student's relations agree with the teacher's on small objects better than feature imitation's "
        "(row L1 at P2 0.21 vs 0.34; lower is closer, 0–2)."
    )
    assert "auc" in str(rc.relation_metrics_chart(frame, "auc").to_dict())
    assert relation_metric_frame({}).empty and agreement_sentence({}) is None


def test_tables_show_empty_cells_as_a_dash():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
    try:
        from _shared.widgets import EMPTY_CELL, table_view
    finally:
        sys.path.pop(0)
    plain = pd.DataFrame({"model": ["a"], "AP": [0.5]})
    assert table_view(plain) is plain
    frame = pd.DataFrame({"model": ["a", "b"], "ci": [0.123, None], "note": ["x", None], "AP": [0.5, 0.25]})
    shown = table_view(frame)
    assert shown["ci"].tolist() == ["0.123", EMPTY_CELL] and shown["note"].tolist() == ["x", EMPTY_CELL]
    assert shown["AP"].tolist() == [0.5, 0.25]  # a full column keeps its numbers (and its sorting)
    assert frame["ci"].isna().tolist() == [False, True]  # the caller's frame (the CSV) is untouched


def test_every_relation_chart_renders_in_vega(tmp_path):
    """The specs compile and draw in Vega itself (vl-convert, offline), not only serialise: a layer that Vega-Lite
    cannot merge fails here instead of leaving an empty space on the page."""
    vlc = pytest.importorskip("vl_convert")
    labels = [1, 1, 2, 3, 3, 3]
    sizes = ["large", "small", "medium", "small", "small", "large"]
    rel = {
        "teacher": relations_of(block_matrix(labels), labels, sizes),
        "drkd": relations_of(block_matrix(labels, 0.6), labels, sizes, role="drkd"),
    }
    vectors = np.random.default_rng(0).normal(size=(12, 5))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    maps = AffinityMaps("P3", (3, 4), {"teacher": unit @ unit.T, "drkd": unit @ unit.T}, np.array([[0.5, 0.5, 2, 1.5]]))
    image = np.zeros((30, 40, 3))
    gains = {"AP": _gain(0.1, 0.05, 0.15), "APs": _gain(0.1, 0.05, 0.15)}
    report = {"models": {"baseline": {}, "relation": {"gain_over_baseline": gains}}}
    metrics = pd.DataFrame(
        [{"metric": "auc", "model": "drkd", "level": "P2", "size": "all", "mean": 0.7, "ci_low": 0.6, "ci_high": 0.8}]
        + [
            {
                "metric": "row_l1",
                "model": "drkd",
                "level": "P2",
                "size": s,
                "mean": 0.2,
                "ci_low": None,
                "ci_high": None,
            }
            for s in ("small", "all")
        ]
    ).assign(seeds=2)
    charts = {
        "matrices": rc.relation_matrices_chart(rel, CLASSES, highlight=1),
        "picker": pc.pixel_picker_chart(image, maps, (1, 2)),
        "affinity": pc.pixel_affinity_chart(image, maps, (1, 2)),
        "auc": rc.relation_metrics_chart(metrics, "auc"),
        "row_l1": rc.relation_metrics_chart(metrics, "row_l1"),
        "controls": rc.controls_chart(controls_frame(report), "AP"),
    }
    for name, chart in charts.items():
        svg = vlc.vegalite_to_svg(chart.to_dict())
        assert svg.startswith("<svg") and len(svg) > 2000, name
