"""The numbers behind the pixel-relation, graph-projection and instance-relation figures, checked against values
computed by hand or along an independent path (the detector's backbone and the relation units called directly)."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import add_a_study
from matplotlib.figure import Figure

from drkd_viz.analysis import small_objects as so
from drkd_viz.analysis.graph import assignment_map, graph_view, node_map
from drkd_viz.analysis.instances import relation_matrices, relation_summary, row_distances
from drkd_viz.analysis.models import (
    MODEL_ROLES,
    ModelSet,
    image_and_boxes,
    instance_areas,
    load_model_set,
)
from drkd_viz.analysis.models import test_split as open_test_split  # renamed: pytest would collect test_*
from drkd_viz.analysis.pixel import box_mask, contrast_summary, energy_map, foreground_contrast, pixel_maps
from drkd_viz.data.statistics import size_bucket
from drkd_viz.distill.instance_relation import level_stride
from drkd_viz.errors import UserError
from drkd_viz.models.capture import fpn_features, transform_inputs
from drkd_viz.viz.common import figure_png
from drkd_viz.viz.instances import plot_relation_matrices, plot_relation_summary
from drkd_viz.viz.pixel import plot_contrast_summary, plot_graph_view, plot_pixel_maps

SUMMARY_IMAGES = 3  # enough for every column and size to appear, few enough to stay fast


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = os.environ.get("DRKD_TEST_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("figures")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def models(quick_runs) -> ModelSet:
    return load_model_set(quick_runs)


@pytest.fixture(scope="module")
def dataset(quick_runs):
    return open_test_split(quick_runs)


@pytest.fixture(scope="module")
def sample(dataset):
    """The first test image with at least 5 instances of at least two sizes: (index, image, boxes, areas)."""
    for index in range(len(dataset)):
        image, boxes, _ = image_and_boxes(dataset, index)
        areas = instance_areas(dataset, index)
        if len(boxes) >= 5 and len({size_bucket(a) for a in areas}) >= 2:
            return index, image, boxes, areas
    pytest.fail("the quick test split has no image with 5 instances of two sizes")


@pytest.fixture(scope="module")
def levels(models) -> tuple[str, str]:
    """(pixel level, instance level): the finest level with each kind of unit."""
    return models.pixel_levels()[0], models.instance_levels()[0]


def _padded_features(model, image: torch.Tensor, level: str) -> tuple[torch.Tensor, tuple[int, int]]:
    """The FPN feature of ``level`` straight from the backbone (padded batch) and the input size, bypassing
    inspect_image."""
    images, _ = transform_inputs(model, [image])
    with torch.no_grad():
        return fpn_features(model, images.tensors)[level], images.image_sizes[0]


def _crop(x: torch.Tensor, input_size: tuple[int, int], level: str) -> torch.Tensor:
    s = level_stride(level)
    return x[..., : math.ceil(input_size[0] / s), : math.ceil(input_size[1] / s)]


# ---- pure functions on hand-made inputs -----------------------------------------------------------------------
def test_energy_map_is_the_channel_norm_divided_by_its_max():
    feature = torch.zeros(2, 2, 2)
    feature[0, 0, 0], feature[1, 0, 0], feature[1, 1, 1] = 3.0, -4.0, 1.0  # norms 5 and 1
    np.testing.assert_allclose(energy_map(feature, (2, 2)), [[1.0, 0.0], [0.0, 0.2]], atol=1e-6)
    # the image covers one feature pixel of two (the rest is padding): the top-left quarter of an 8x8 upsampling,
    # bilinear with half-pixel centres: sources at -0.375, -0.125 (clamped to 0), 0.125, 0.375
    only = torch.zeros(1, 2, 2)
    only[0, 0, 0] = 5.0
    heat = energy_map(only, (4, 4), valid=(1.0, 1.0))
    assert heat.shape == (4, 4)
    np.testing.assert_allclose(heat[0], [1.0, 1.0, 0.875, 0.625], atol=1e-6)
    assert not energy_map(torch.zeros(3, 2, 2), (5, 4)).any()


def test_foreground_contrast_on_a_hand_made_heatmap():
    heat = np.full((10, 20), 0.1)
    heat[2:5, 3:8] = 1.0
    assert foreground_contrast(heat, np.array([[3, 2, 8, 5]])) == pytest.approx(10.0)
    # fractional box: pixels whose centre (c + 0.5) lies inside, the same 3 x 5 block
    assert box_mask(heat.shape, [[2.6, 1.6, 8.4, 5.4]]).sum() == 15
    assert foreground_contrast(heat, torch.tensor([[2.6, 1.6, 8.4, 5.4]])) == pytest.approx(10.0)
    # half the box on the bright block, half on background: inside (15·1 + 15·0.1) / 30 = 0.55, outside 0.1
    assert foreground_contrast(heat, np.array([[3, 2, 8, 8]])) == pytest.approx(5.5)
    assert foreground_contrast(np.ones((4, 4)), np.array([[0, 0, 2, 2]])) == pytest.approx(1.0)
    assert math.isnan(foreground_contrast(heat, np.zeros((0, 4))))
    assert math.isnan(foreground_contrast(heat, np.array([[0, 0, 20, 10]])))


# ---- loading -------------------------------------------------------------------------------------------------
def test_model_set_pairs_each_detector_with_its_units(models, quick_runs):
    assert models.roles == ["teacher", "baseline", "feature_imitation", "drkd"]
    assert models.run_dirs["drkd"] == quick_runs / "drkd-s0"
    assert "teacher units" in models.units["teacher"].description
    assert models.units["baseline"] is models.units["drkd"]  # the students share one lens
    assert all(not m.training for m in models.models.values())
    assert models.pixel_levels() and models.instance_levels()


def test_runs_folder_without_the_drkd_run_is_a_user_error(quick_runs, tmp_path):
    partial = tmp_path / "runs"
    partial.mkdir()
    for entry in quick_runs.iterdir():  # links: the shared fixture folder stays untouched
        if entry.name != "drkd-s0":
            (partial / entry.name).symlink_to(entry)
    with pytest.raises(UserError, match=r"no DRKD student run 'drkd-s0'.*drkd-viz pipeline --preset"):
        load_model_set(partial)
    with pytest.raises(UserError, match=r"baseline-s0 \(pick that seed\)"):
        load_model_set(quick_runs, seed=3)
    with pytest.raises(UserError, match="runs folder not found"):
        load_model_set(tmp_path / "nowhere")
    shutil.rmtree(partial)


def test_a_report_names_the_runs_to_load(quick_runs, tmp_path):
    """A report whose runs live in a subfolder under other seeds (a study's): the model set and the stored
    detections come from the runs it names for the seed asked; a seed it lacks is a clear error."""
    runs = tmp_path / "runs"
    study = add_a_study(quick_runs, runs)
    models = load_model_set(runs, seed=2, report=study)
    root = runs.resolve()
    assert models.run_dirs == {
        "teacher": root / "study" / "teacher",
        "baseline": root / "study" / "baseline-s2",
        "drkd": root / "study" / "drkd-s2",
        "feature_imitation": root / "study" / "feature_imitation-s2",
    }
    assert models.roles == ["teacher", "baseline", "feature_imitation", "drkd"]
    assert so.evaluation(runs, "drkd", seed=1, report=study).stats == so.evaluation(quick_runs, "drkd").stats
    with pytest.raises(UserError, match=r"no 'baseline' run of seed 0 \(its seeds: \[1, 2\]\)"):
        load_model_set(runs, seed=0, report=study)
    with pytest.raises(UserError, match="no 'pkd' model"):
        so.evaluation(runs, "pkd", seed=1, report=study)
    shutil.rmtree(runs / "study" / "baseline-s1")
    with pytest.raises(UserError, match=r"study/baseline-s1, which is gone.*--preset study"):
        load_model_set(runs, seed=1, report=study)


def test_level_and_index_errors_are_user_errors(models, dataset, sample):
    _, image, boxes, _ = sample
    with pytest.raises(UserError, match="has no graph-reasoning units"):
        pixel_maps(models, image, boxes, "P9")
    with pytest.raises(UserError, match="has no instance relations"):
        relation_matrices(models, image, boxes, "P6")
    with pytest.raises(UserError, match="out of range"):
        image_and_boxes(dataset, len(dataset))


# ---- pixel relations and the graph projection ----------------------------------------------------------------
def test_pixel_maps_match_the_inspection_api(models, sample, levels):
    _, image, boxes, _ = sample
    level = levels[0]
    maps = pixel_maps(models, image, boxes, level)
    assert list(maps) == list(MODEL_ROLES)
    size = tuple(image.shape[-2:])
    for m in maps.values():
        assert m.feature.shape == m.relation.shape == size
        assert m.feature.max() == pytest.approx(1.0) and m.feature.min() >= 0
        assert m.feature_contrast == pytest.approx(foreground_contrast(m.feature, boxes.numpy()))
        assert m.relation_contrast == pytest.approx(foreground_contrast(m.relation, boxes.numpy()))
    # along the full detector forward of inspect_image (which crops the padding itself) for one model
    view = models.inspect("drkd", image, None, levels=[level])
    valid = (view.input_size[0] / level_stride(level), view.input_size[1] / level_stride(level))
    np.testing.assert_allclose(maps["drkd"].feature, energy_map(view.levels[level].feature, size, valid), atol=1e-5)
    np.testing.assert_allclose(maps["drkd"].relation, energy_map(view.levels[level].relation, size, valid), atol=1e-5)
    assert not np.allclose(maps["teacher"].relation, maps["drkd"].relation)
    assert not np.allclose(maps["drkd"].feature, maps["drkd"].relation)


def test_graph_projection_votes_and_node_states(models, sample, levels):
    _, image, _, _ = sample
    level, role = levels[0], "teacher"
    view = graph_view(models, image, role, level)
    unit = models.units[role].pixel[level]
    feature, input_size = _padded_features(models.models[role], image, level)
    x = feature[0].double()
    weights = {name: p.detach().double() for name, p in unit.named_parameters()}
    # P = W_proj x + b: one vote per pixel and node
    proj = torch.einsum("mc,chw->mhw", weights["proj.weight"][:, :, 0, 0], x) + weights["proj.bias"][:, None, None]
    np.testing.assert_allclose(view.projection, _crop(proj, input_size, level).numpy(), atol=1e-4)
    assert view.projection.shape[0] == unit.nodes
    np.testing.assert_array_equal(view.assignment, view.projection.argmax(0))
    # V = X Pᵀ / HW over the padded map; the affinity is the cosine similarity of V's columns
    states = torch.einsum("sc,chw->shw", weights["state.weight"][:, :, 0, 0], x) + weights["state.bias"][:, None, None]
    nodes = states.flatten(1) @ proj.flatten(1).T / (x.shape[1] * x.shape[2])
    unit_cols = nodes / nodes.norm(dim=0, keepdim=True)
    np.testing.assert_allclose(view.affinity, (unit_cols.T @ unit_cols).numpy(), atol=1e-4)
    np.testing.assert_allclose(np.diag(view.affinity), 1.0, atol=1e-6)
    np.testing.assert_allclose(view.mixing, weights["node_mix.weight"][:, :, 0].numpy(), atol=1e-7)
    # node maps: bilinear interpolation stays within the node's range of votes; shares cover every pixel once
    votes = node_map(view, 1)
    assert votes.shape == tuple(image.shape[-2:])
    assert view.projection[1].min() - 1e-5 <= votes.min() <= votes.max() <= view.projection[1].max() + 1e-5
    assert view.node_shares().sum() == pytest.approx(1.0)
    assert set(np.unique(assignment_map(view))) <= set(np.unique(view.assignment))
    with pytest.raises(UserError, match="does not exist"):
        node_map(view, unit.nodes)


# ---- instance relations ----------------------------------------------------------------------------------------
def test_relation_matrices_are_ordered_by_area(models, sample, levels):
    _, image, boxes, areas = sample
    level = levels[1]
    rel = relation_matrices(models, image, boxes, level, areas=areas)
    n = len(boxes)
    for r in rel.values():
        assert r.matrix.shape == (n, n) and r.filter.shape == (n, n)
        np.testing.assert_allclose(r.matrix.sum(1), 1.0, atol=1e-6)
        assert (r.matrix >= 0).all()
        assert (np.diff(r.areas) <= 0).all(), "largest first"
        np.testing.assert_array_equal(r.boxes, boxes.numpy()[r.order])
        np.testing.assert_array_equal(r.areas, areas[r.order])
        assert r.sizes == [size_bucket(a) for a in areas[r.order]]
    # inspect_image's full forward on the boxes in the dataset's order, then permuted: instance k is box order[k]
    r = rel["drkd"]
    direct = models.inspect("drkd", image, boxes, levels=[]).instances[level]
    np.testing.assert_allclose(r.matrix, direct.matrix.double().numpy()[np.ix_(r.order, r.order)], atol=1e-5)
    np.testing.assert_allclose(r.filter, direct.filter.double().numpy()[np.ix_(r.order, r.order)], atol=1e-5)
    assert not np.allclose(rel["teacher"].matrix, rel["drkd"].matrix)
    # without annotation areas the box areas order the instances
    by_box = relation_matrices(models, image, boxes, level, roles=["drkd"])["drkd"]
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    np.testing.assert_array_equal(by_box.order, np.argsort(-box_area.numpy(), kind="stable"))


def test_images_with_one_or_no_instance(models, sample, levels):
    _, image, boxes, _ = sample
    one = relation_matrices(models, image, boxes[:1], levels[1], roles=["teacher", "drkd"])
    for r in one.values():
        np.testing.assert_allclose(r.matrix, [[1.0]])
        assert r.filter.shape == (1, 1) and r.sizes == [size_bucket(float(r.areas[0]))]
    none = relation_matrices(models, image, boxes[:0], levels[1], roles=["drkd"])["drkd"]
    assert none.matrix.shape == (0, 0) and len(none.order) == 0
    assert "no ground-truth instances" in plot_relation_matrices(image, {"drkd": none}).axes[0].get_title()
    assert isinstance(plot_relation_matrices(image, one), Figure)
    # an uploaded image has no ground truth: maps without contrasts
    maps = pixel_maps(models, image, None, levels[0], roles=["drkd"])
    assert math.isnan(maps["drkd"].feature_contrast) and maps["drkd"].feature.max() == pytest.approx(1.0)
    assert "n/a" in plot_pixel_maps(image, maps, None).axes[0].get_title()


def test_numbered_boxes_match_the_matrix_indices(models, sample, levels, artifacts):
    _, image, boxes, areas = sample
    rel = relation_matrices(models, image, boxes, levels[1], areas=areas)
    fig = plot_relation_matrices(image, rel, highlight=0)
    image_ax = next(ax for ax in fig.axes if "numbered by area" in ax.get_title())
    numbers = {t.get_text(): t.get_position() for t in image_ax.texts}
    assert set(numbers) == {str(k) for k in range(len(boxes))}
    for k, box in enumerate(rel["teacher"].boxes):
        x, y = numbers[str(k)]  # above the box's top-left corner, or below its bottom-left one at the top edge
        assert x == pytest.approx(box[0]) and y in (pytest.approx(box[1]), pytest.approx(box[3]))
    assert any("DRKD student − A teacher" in ax.get_title() for ax in fig.axes)
    (artifacts / "relation_matrices.png").write_bytes(figure_png(fig))


@pytest.fixture(scope="module")
def summary(models, dataset, levels):
    return relation_summary(models, dataset, levels[1], max_images=SUMMARY_IMAGES)


def test_relation_summary_rows_and_distances(summary, models, dataset, levels):
    assert list(summary.columns) == [
        "image_id",
        "index",
        "ann_id",
        "instance",
        "n_instances",
        "level",
        "area",
        "size",
        "role",
        "l1",
        "kl",
    ]
    assert set(summary["role"]) == {"baseline", "drkd"}
    assert summary["index"].nunique() == SUMMARY_IMAGES and (summary["n_instances"] >= 2).all()
    assert set(summary["size"]) <= {"small", "medium", "large"}
    assert ((summary["l1"] >= 0) & (summary["l1"] <= 2 + 1e-9)).all() and (summary["kl"] >= -1e-9).all()
    for (_, _), group in summary.groupby(["index", "role"]):
        assert len(group) == group["n_instances"].iloc[0]
    for ann_id, size in zip(summary["ann_id"], summary["size"], strict=True):
        assert size == size_bucket(dataset.coco.anns[ann_id]["area"])
    # one image recomputed from the matrices
    index = int(summary["index"].iloc[0])
    image, boxes, _ = image_and_boxes(dataset, index)
    rel = relation_matrices(models, image, boxes, levels[1], instance_areas(dataset, index), ["teacher", "drkd"])
    l1, kl = row_distances(rel["drkd"].matrix, rel["teacher"].matrix)
    rows = summary[(summary["index"] == index) & (summary["role"] == "drkd")].sort_values("instance")
    np.testing.assert_allclose(rows["l1"], l1, atol=1e-9)
    np.testing.assert_allclose(rows["kl"], kl, atol=1e-9)
    t, s = rel["teacher"].matrix[0], rel["drkd"].matrix[0]
    assert kl[0] == pytest.approx(float((t * np.log(t / s)).sum()), rel=1e-6)


def test_contrast_summary_and_summary_figures(models, dataset, levels, summary, sample, artifacts):
    frame = contrast_summary(models, dataset, levels[0], max_images=2)
    assert list(frame.columns) == ["image_id", "index", "n_instances", "level", "role", "map", "contrast"]
    assert len(frame) == 2 * len(MODEL_ROLES) * 2
    first = frame[frame["index"] == frame["index"].min()]
    image, boxes, _ = image_and_boxes(dataset, int(first["index"].iloc[0]))
    maps = pixel_maps(models, image, boxes, levels[0])
    for role, m in maps.items():
        got = first[first["role"] == role].set_index("map")["contrast"]
        assert got["feature"] == pytest.approx(m.feature_contrast)
        assert got["relation"] == pytest.approx(m.relation_contrast)

    _, image, boxes, _ = sample
    figures = {
        "pixel_maps": plot_pixel_maps(image, pixel_maps(models, image, boxes, levels[0]), boxes, opacity=0.55),
        "graph_view": plot_graph_view(image, graph_view(models, image, "drkd", levels[0]), node=2),
        "contrast_summary": plot_contrast_summary(frame),
        "relation_summary": plot_relation_summary(summary),
    }
    for name, fig in figures.items():
        assert isinstance(fig, Figure)
        assert fig.get_suptitle() or fig.axes[0].get_title()
        png = figure_png(fig)
        assert png.startswith(b"\x89PNG")
        (artifacts / f"{name}.png").write_bytes(png)
    colorbars = [ax for ax in figures["graph_view"].axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 4


# ---- split-wide relation metrics (class structure and agreement) -----------------------------------------------
def test_split_relation_metrics_against_an_independent_path(models, dataset):
    """AUC and agreement from relation_metrics equal those computed here image by image from the backbone."""
    from torchvision.models.detection.transform import resize_boxes

    from drkd_viz.analysis.relation_metrics import relation_metrics
    from drkd_viz.distill.instance_relation import boxes_to_rois, pool_instances
    from drkd_viz.distill.relation_metrics import auc, row_agreement
    from drkd_viz.distill.relations import instance_relation

    roles = {r: models.models[r] for r in ("teacher", "baseline", "drkd")}
    metrics = relation_metrics(roles, dataset, levels=["P2"], max_images=4)
    assert metrics.images == 4
    assert set(metrics.auc["role"]) == set(roles) and set(metrics.agreement["role"]) == {"baseline", "drkd"}
    scores, same, l1 = [], [], []
    used = 0
    for index in range(len(dataset)):
        image, boxes, labels = image_and_boxes(dataset, index)
        if len(boxes) < 3:
            continue
        used += 1
        if used > 4:
            break
        matrices = {}
        for role in ("teacher", "drkd"):
            model = roles[role]
            images, _ = transform_inputs(model, [image])
            feats = fpn_features(model, images.tensors)
            moved = resize_boxes(boxes.float(), tuple(image.shape[-2:]), tuple(images.image_sizes[0]))
            r = pool_instances(feats["P2"], boxes_to_rois([moved])[0], level_stride("P2"), 3)
            matrices[role] = instance_relation(r, torch.zeros(len(boxes), dtype=torch.int64))
        n = len(boxes)
        for i in range(n):
            for j in range(n):
                if i != j:
                    scores.append(float(matrices["teacher"][i, j]))
                    same.append(bool(labels[i] == labels[j]))
        l1 += row_agreement(matrices["drkd"], matrices["teacher"], torch.zeros(n, dtype=torch.int64))[0].tolist()
    teacher_auc = metrics.auc.set_index(["role", "level"]).loc[("teacher", "P2"), "auc"]
    assert teacher_auc == pytest.approx(auc(torch.tensor(scores), torch.tensor(same)))
    row = metrics.agreement.query("role == 'drkd' and level == 'P2' and size == 'all'").iloc[0]
    assert row["row_l1"] == pytest.approx(float(np.mean(l1)), rel=1e-5) and row["rows"] == len(l1)
    assert 0.0 <= teacher_auc <= 1.0
    with pytest.raises(UserError, match="not FPN levels"):
        relation_metrics(roles, dataset, levels=["P9"], max_images=1)


def test_a_drkd_run_without_the_papers_terms_is_shown_through_parameter_free_relations(models, dataset, sample):
    """DRKD's default trains no graph unit and no learned relation module: the pixel maps then hold the plain
    feature only, the instance matrices are the parameter-free relation L_IRA distils, and the graph explorer
    says why it has nothing to show."""
    import dataclasses

    from drkd_viz.analysis.graph import graph_view
    from drkd_viz.distill.inspection import RelationUnits
    from drkd_viz.distill.relations import instance_relation

    bare = RelationUnits({}, {}, 3, "no units")
    plain = dataclasses.replace(models, units=dict.fromkeys(models.units, bare))
    assert not plain.has_graph_units()
    assert plain.pixel_levels() == list(plain.levels) and plain.instance_levels() == list(plain.levels[:2])
    _, image, boxes, areas = sample
    maps = pixel_maps(plain, image, boxes, "P2", ["teacher", "drkd"])
    assert maps["drkd"].relation is None and maps["drkd"].relation_contrast is None
    rel = relation_matrices(plain, image, boxes, "P2", areas, ["teacher", "drkd"])["drkd"]
    assert rel.source == "parameter-free" and rel.filter is None
    feats = plain.features("drkd", image)
    moved = torch.as_tensor(rel.boxes, dtype=torch.float32) * torch.tensor(
        [feats.input_size[1] / feats.image_size[1], feats.input_size[0] / feats.image_size[0]] * 2
    )
    from drkd_viz.distill.instance_relation import boxes_to_rois, pool_instances

    r = pool_instances(feats.features["P2"], boxes_to_rois([moved])[0], level_stride("P2"), 3)
    expected = instance_relation(r, torch.zeros(len(boxes), dtype=torch.int64)).double().numpy()
    np.testing.assert_allclose(rel.matrix, expected, atol=1e-5)
    with pytest.raises(UserError, match="trained no graph-reasoning units"):
        graph_view(plain, image, "drkd", "P2")


# ---- the relation views: pixel affinity, node purity, class-ordered matrices ----------------------------------
def test_affinity_maps_share_one_grid_and_match_a_direct_computation(models, sample):
    from drkd_viz.analysis.pixel import affinity_maps

    _, image, boxes, _ = sample
    maps = affinity_maps(models, image, "P3", boxes, cells=12)
    gh, gw = maps.grid
    assert max(gh, gw) == 12 and set(maps.affinity) == set(MODEL_ROLES)
    for matrix in maps.affinity.values():
        assert matrix.shape == (gh * gw, gh * gw)
        np.testing.assert_allclose(matrix, matrix.T, atol=1e-6)
        np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-5)
        assert matrix.min() >= -1 - 1e-6 and matrix.max() <= 1 + 1e-6
    # along an independent path: the backbone's feature, cropped to the image, pooled, centred, cosine
    feature, (h, w) = _padded_features(models.models["teacher"], image, "P3")
    stride = level_stride("P3")
    cropped = feature[0, :, : math.ceil(h / stride), : math.ceil(w / stride)]
    pooled = torch.nn.functional.adaptive_avg_pool2d(cropped[None], (gh, gw))[0].flatten(1).T.double()
    pooled = pooled - pooled.mean(0)
    unit = pooled / pooled.norm(dim=1, keepdim=True)
    np.testing.assert_allclose(maps.affinity["teacher"], (unit @ unit.T).numpy(), atol=1e-5)
    # the boxes in cell units
    scale = np.array([gw / image.shape[-1], gh / image.shape[-2]] * 2)
    np.testing.assert_allclose(maps.boxes, boxes.numpy() * scale)
    with pytest.raises(UserError, match="unknown FPN level"):
        affinity_maps(models, image, "P9")


def test_graph_view_residual_ratio_and_node_purity(models, sample, levels):
    _, image, boxes, _ = sample
    level = levels[0]
    view = graph_view(models, image, "drkd", level, boxes)
    unit = models.units["drkd"].pixel[level]
    feature, (h, w) = _padded_features(models.models["drkd"], image, level)
    stride = level_stride(level)
    rows, cols = math.ceil(h / stride), math.ceil(w / stride)
    with torch.no_grad():
        residual = unit.parts(feature).residual[0, :, :rows, :cols]
    assert view.residual_ratio == pytest.approx(float(residual.norm() / feature[0, :, :rows, :cols].norm()), rel=1e-4)
    assert view.purity.shape == (view.nodes,) and ((view.purity >= 0) & (view.purity <= 1 + 1e-9)).all()
    assert graph_view(models, image, "drkd", level).purity is None  # no boxes, no purity


def test_class_ordered_and_anchored_relation_matrices(models, sample, dataset, levels):
    index, image, boxes, areas = sample
    _, _, labels = image_and_boxes(dataset, index)
    level = levels[1]
    rel = relation_matrices(models, image, boxes, level, areas, ["teacher", "drkd"], labels=labels, relation="anchored")
    for r in rel.values():
        assert r.source == "parameter-free"
        assert (np.diff(r.labels) >= 0).all(), "by class"
        for label in set(r.labels.tolist()):
            assert (np.diff(r.areas[r.labels == label]) <= 0).all(), "then largest first"
        np.testing.assert_array_equal(r.labels, labels.numpy()[r.order])
        np.testing.assert_allclose(r.matrix.sum(1), 1.0, atol=1e-6)
    learned = relation_matrices(models, image, boxes, level, areas, ["drkd"], labels=labels)["drkd"]
    assert learned.source == "learned" and not np.allclose(learned.matrix, rel["drkd"].matrix)
    with pytest.raises(UserError, match="choose 'learned' or 'anchored'"):
        relation_matrices(models, image, boxes, level, relation="cosine")
    with pytest.raises(UserError, match="labels given for"):
        relation_matrices(models, image, boxes, level, labels=labels[:1])
