"""The anchored relation terms (L_IRA, L_PA), the controls (rotation, shuffled targets) and the relation metrics,
on random tensors and against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import random_features

from drkd_viz.distill.anchored_relation import (
    AnchoredInstanceRelationLoss,
    background_boxes,
    relation_nodes,
)
from drkd_viz.distill.base import GroundTruth
from drkd_viz.distill.baselines import FeatureImitationLoss
from drkd_viz.distill.controls import random_orthogonal, rotate_channels
from drkd_viz.distill.pixel_affinity import PixelAffinityLoss
from drkd_viz.distill.relation_metrics import auc, row_agreement, same_class_auc, spearman
from drkd_viz.distill.relations import (
    instance_distances,
    instance_relation,
    permute_within_images,
    pixel_affinity,
)

feats = random_features


def truth(counts, size=64, seed=0) -> GroundTruth:
    g = torch.Generator().manual_seed(seed)
    boxes, labels = [], []
    for n in counts:
        xy = torch.rand(n, 2, generator=g) * (size - 20)
        wh = 4 + torch.rand(n, 2, generator=g) * 16
        boxes.append(torch.cat([xy, xy + wh], dim=1))
        labels.append(torch.randint(1, 4, (n,), generator=g))
    return GroundTruth(boxes, labels, [(size, size)] * len(counts))


# ---- parameter-free relations: hand computations -------------------------------------------------------
def test_instance_relation_against_a_hand_computation():
    r = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    index = torch.zeros(3, dtype=torch.int64)
    a = instance_relation(r, index, temperature=0.5)
    c = 1 / math.sqrt(2)  # cos between (1,0)/(0,1) and (1,1)
    # row 0 relates to node 1 (cos c) and node 2 (cos 0); the diagonal is left out
    e1, e2 = math.exp(c / 0.5), math.exp(0.0)
    assert a[0].tolist() == pytest.approx([0.0, e1 / (e1 + e2), e2 / (e1 + e2)], abs=1e-6)
    assert a[1].tolist() == pytest.approx([0.5, 0.0, 0.5], abs=1e-6)
    assert torch.allclose(a.sum(1), torch.ones(3))


def test_relations_never_cross_images_and_distances_are_scale_free():
    r = torch.randn(7, 5)
    index = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    a = instance_relation(r, index)
    assert a[:3, 3:].abs().max() == 0 and a[3:, :3].abs().max() == 0
    d = instance_distances(r, index)
    assert torch.allclose(d, instance_distances(10 * r, index), atol=1e-5)  # divided by the mean distance
    assert float(d[:3, :3].sum()) / 6 == pytest.approx(1.0, abs=1e-5)  # pairs of image 0 average 1
    assert d[0, 0] == 0 and d[0, 3] == 0


def test_pixel_affinity_against_a_hand_computation():
    # a 1 x 2 x 2 x 2 feature: 4 cells of 2 channels; centring subtracts the channel means over the cells
    x = torch.tensor([[[[1.0, 3.0], [1.0, 3.0]], [[0.0, 0.0], [2.0, 2.0]]]])
    a = pixel_affinity(x, grid=2)
    cells = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])  # centred (c0, c1) per cell
    unit = cells / cells.norm(dim=1, keepdim=True)
    assert torch.allclose(a[0], unit @ unit.T, atol=1e-6)
    assert pixel_affinity(torch.randn(2, 8, 40, 48), grid=12).shape == (2, 144, 144)
    assert pixel_affinity(torch.randn(2, 8, 5, 6), grid=12).shape == (2, 30, 30)  # never upsampled


# ---- rotation: relations are invariant, imitation is not -----------------------------------------------
def test_random_orthogonal_is_orthogonal():
    q = random_orthogonal(16, torch.Generator().manual_seed(0))
    assert torch.allclose(q @ q.T, torch.eye(16), atol=1e-5)


def test_rotating_the_teacher_leaves_relations_unchanged_and_scrambles_imitation():
    torch.manual_seed(0)
    levels = ["P2", "P3"]
    student, teacher = feats(levels, 8, seed=1), feats(levels, 16, seed=2)
    rotated = rotate_channels(teacher, torch.Generator().manual_seed(3))
    gt = truth([3, 4])
    ira = AnchoredInstanceRelationLoss(levels, 8, 16, background=2)
    for form in ("kl", "distance"):
        ira.form = form
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        plain, _ = ira(student, teacher, gt, g1)
        turned, _ = ira(student, rotated, gt, g2)
        assert float(turned) == pytest.approx(float(plain), rel=1e-4)
    pa = PixelAffinityLoss(levels)
    assert float(pa(student, rotated)[0]) == pytest.approx(float(pa(student, teacher)[0]), rel=1e-4)
    imitation = FeatureImitationLoss(levels, 8, 16).requires_grad_(False)
    assert abs(float(imitation(student, rotated)[0]) - float(imitation(student, teacher)[0])) > 1e-3
    # a student identical to the teacher has no relation loss, rotated or not
    assert float(pa(teacher, rotated)[0]) < 1e-8


# ---- L_IRA -----------------------------------------------------------------------------------------------
def test_background_nodes_avoid_the_ground_truth_and_stay_inside_the_image():
    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[10.0, 10.0, 30.0, 30.0], [40.0, 5.0, 60.0, 20.0]])
    extra = background_boxes(boxes, (64, 80), 6, g)
    assert extra.shape == (6, 4)
    assert (extra[:, 0] >= 0).all() and (extra[:, 2] <= 80).all() and (extra[:, 3] <= 64).all()
    from torchvision.ops import box_iou

    assert float(box_iou(extra, boxes).max()) <= 0.3
    assert background_boxes(torch.zeros(0, 4), (64, 64), 4, g).shape == (4, 4)


def test_images_with_fewer_than_three_nodes_are_left_out():
    gt = truth([1, 0, 5])
    _rois, index, _labels, is_instance = relation_nodes(gt, background=0)
    assert index.tolist() == [2] * 5 and bool(is_instance.all())
    # one object + 2 background nodes: 3, kept; an empty image has 2 background nodes only: left out
    _rois, index, labels, is_instance = relation_nodes(gt, background=2)
    assert index.bincount().tolist() == [3, 0, 7] and int(is_instance.sum()) == 6
    assert labels[~is_instance].eq(0).all()


def test_ira_is_zero_for_identical_sides_and_positive_otherwise():
    levels = ["P2", "P3"]
    teacher = feats(levels, 16, seed=2)
    gt = truth([4, 3])
    loss = AnchoredInstanceRelationLoss(levels, 16, 16, background=2)
    same, _ = loss(teacher, teacher, gt, torch.Generator().manual_seed(0))
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    student = {k: v.clone().requires_grad_(True) for k, v in feats(levels, 8, seed=1).items()}
    value, per_level = AnchoredInstanceRelationLoss(levels, 8, 16, background=2)(student, teacher, gt)
    assert float(value.detach()) > 0 and set(per_level) == set(levels)
    value.backward()
    assert all(torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0 for s in student.values())


def test_ira_kl_against_a_hand_computation():
    levels = ["P2"]
    student, teacher = feats(levels, 4, batch=1, seed=1), feats(levels, 6, batch=1, seed=2)
    gt = truth([4])
    loss = AnchoredInstanceRelationLoss(levels, 4, 6, roi_size=2, temperature=0.2, background=0)
    value, _ = loss(student, teacher, gt)
    from torchvision.ops import roi_align

    rois = torch.cat([torch.zeros(4, 1), gt.boxes[0]], dim=1)
    r_s = roi_align(student["P2"], rois, 2, 1 / 4, 2, True).flatten(1)
    r_t = roi_align(teacher["P2"], rois, 2, 1 / 4, 2, True).flatten(1)
    expected = 0.0
    for i in range(4):
        others = [j for j in range(4) if j != i]
        cs = torch.nn.functional.cosine_similarity(r_s[i : i + 1], r_s[others]) / 0.2
        ct = torch.nn.functional.cosine_similarity(r_t[i : i + 1], r_t[others]) / 0.2
        p, q = torch.softmax(ct, 0), torch.softmax(cs, 0)
        expected += float((p * (p.log() - q.log())).sum()) / 4
    assert float(value) == pytest.approx(expected, rel=1e-4)


def test_adapter_student_side_has_parameters_the_features_side_has_none():
    assert not list(AnchoredInstanceRelationLoss(["P2"], 8, 16).parameters())
    assert list(AnchoredInstanceRelationLoss(["P2"], 8, 16, student_side="adapter").parameters())
    assert not list(PixelAffinityLoss(["P2"]).parameters())


def test_shuffled_targets_are_a_permutation_within_each_image():
    index = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    perm = permute_within_images(index, torch.Generator().manual_seed(0))
    assert sorted(perm.tolist()) == list(range(9))
    assert torch.equal(index[perm], index)
    levels = ["P2"]
    student, teacher = feats(levels, 8, seed=1), feats(levels, 8, seed=1)  # identical sides
    gt = truth([5, 6])
    plain = AnchoredInstanceRelationLoss(levels, 8, 8, background=0)
    shuffled = AnchoredInstanceRelationLoss(levels, 8, 8, background=0, shuffle=True)
    assert float(plain(student, teacher, gt)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(shuffled(student, teacher, gt, torch.Generator().manual_seed(1))[0]) > 1e-3
    pa = PixelAffinityLoss(levels, shuffle=True)
    assert float(pa(student, teacher, torch.Generator().manual_seed(1))[0]) > 1e-3


def test_ira_diagnostics_measure_class_structure_and_agreement():
    levels = ["P2"]
    teacher = feats(levels, 8, seed=2)
    loss = AnchoredInstanceRelationLoss(levels, 8, 8, background=2)
    loss.collect_diagnostics = True
    loss(teacher, teacher, truth([5, 6]))
    d = loss.last_diagnostics
    assert set(d) >= {"ira_auc_t_P2", "ira_auc_s_P2", "ira_row_l1_P2", "ira_t_entropy_P2"}
    assert d["ira_auc_t_P2"] == d["ira_auc_s_P2"] and d["ira_row_l1_P2"] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 <= d["ira_t_entropy_P2"] <= 1.0


# ---- metrics on hand-made cases --------------------------------------------------------------------------
def test_auc_against_hand_made_cases():
    assert auc(torch.tensor([0.9, 0.8, 0.1, 0.2]), torch.tensor([1, 1, 0, 0])) == 1.0
    assert auc(torch.tensor([0.1, 0.2, 0.9, 0.8]), torch.tensor([1, 1, 0, 0])) == 0.0
    assert auc(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([1, 0, 0])) == 0.5  # ties count half
    assert auc(torch.tensor([0.3, 0.1]), torch.tensor([1, 1])) is None
    # 3 positives, 2 negatives: 5 of the 6 (pos, neg) pairs ordered right
    assert auc(torch.tensor([0.9, 0.4, 0.6, 0.5, 0.1]), torch.tensor([1, 1, 1, 0, 0])) == pytest.approx(5 / 6)


def test_identical_same_class_instances_give_auc_one_and_random_ones_about_half():
    # two classes, each instance a copy of its class's vector plus tiny noise: same-class pairs have cosine ~1
    g = torch.Generator().manual_seed(0)
    prototypes = torch.randn(2, 32, generator=g)
    labels = torch.tensor([0, 0, 0, 1, 1, 1] * 2)
    index = torch.tensor([0] * 6 + [1] * 6)
    vectors = prototypes[labels] + 1e-3 * torch.randn(12, 32, generator=g)
    assert same_class_auc(instance_relation(vectors, index), index, labels) == 1.0
    values = []
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 3, (200,), generator=g)
        index = torch.arange(200) // 10
        values.append(same_class_auc(instance_relation(torch.randn(200, 32, generator=g), index), index, labels))
    assert abs(sum(values) / len(values) - 0.5) < 0.03


def test_row_agreement_and_spearman():
    index = torch.zeros(4, dtype=torch.int64)
    a = instance_relation(torch.randn(4, 8), index)
    l1, rho = row_agreement(a, a, index)
    assert torch.allclose(l1, torch.zeros(4)) and all(r == pytest.approx(1.0) for r in rho)
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert spearman(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])) is None


def test_pixel_affinity_frobenius_is_the_per_image_norm_summed():
    levels = ["P2", "P3"]
    student, teacher = feats(levels, 8, seed=1), feats(levels, 16, seed=2)
    value, _ = PixelAffinityLoss(levels, grid=4, norm="frobenius")(student, teacher)
    expected = sum(
        float(torch.linalg.matrix_norm(pixel_affinity(student[lv], 4)[b] - pixel_affinity(teacher[lv], 4)[b]))
        for lv in levels
        for b in range(2)
    )
    assert float(value) == pytest.approx(expected, rel=1e-5)
    mse = PixelAffinityLoss(levels, grid=4)(student, teacher)[0]
    diffs = [pixel_affinity(student[lv], 4) - pixel_affinity(teacher[lv], 4) for lv in levels]
    assert float(mse) == pytest.approx(sum(float(d.pow(2).mean()) for d in diffs), rel=1e-5)


def test_methods_come_from_one_table_and_relation_only_has_no_imitation():
    from drkd_viz.distill.config import CONTROLS, METHOD_NAMES, METHOD_WEIGHTS, ablation_settings, resolve_distill
    from drkd_viz.experiments.variants import VARIANT_METHODS

    levels = ["P2", "P3", "P4", "P5", "P6"]
    assert ("none", *METHOD_WEIGHTS) == METHOD_NAMES and ("baseline", *METHOD_WEIGHTS) == VARIANT_METHODS
    relation = resolve_distill({"method": "relation", "teacher": "t", "fi_weight": 3.0, "pr_weight": 1.0}, levels)
    assert relation.ira_weight > 0 and relation.pa_weight > 0
    assert relation.fi_weight == relation.pr_weight == relation.ins_weight == relation.pkd_weight == 0.0
    assert relation.ira_levels == ["P2", "P3"] and relation.pa_levels == ["P2", "P3", "P4"]
    # DRKD's λ come per method: its imitation and anchored relations on, the paper's terms off unless set
    drkd = resolve_distill({"method": "drkd", "teacher": "t"}, levels)
    assert drkd.fi_weight > 0 and drkd.ira_weight > 0 and drkd.pa_weight > 0 and drkd.pr_weight == 0.0
    both = resolve_distill({"method": "drkd", "teacher": "t", "pr_weight": 6.0, "pa_weight": 2.0}, levels)
    assert both.pr_weight == 6.0 and both.pa_weight == 2.0 and both.fi_weight == drkd.fi_weight
    for name, section in CONTROLS.items():
        resolved = resolve_distill({**section, "teacher": "t"}, levels)
        assert resolved.rotate_teacher == ("rotate" in name) and resolved.shuffle_relations == ("shuffle" in name)
        assert ablation_settings(name)
