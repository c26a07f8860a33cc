"""DRKD's modules on random tensors: shapes, the batched instance losses against a per-image reference,
empty and single-instance images, relation matrices, norms, and transformed-coordinate pooling."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import random_features

from drkd_viz.distill.baselines import FeatureImitationLoss, PearsonImitationLoss, standardise_channels
from drkd_viz.distill.diagnostics import relation_entropy_ratio, residual_ratio
from drkd_viz.distill.glore import GraphReasoningUnit
from drkd_viz.distill.instance_relation import (
    CosineRelation,
    InstanceRelationLoss,
    PointwiseAdapter,
    RelationModule,
    boxes_to_rois,
    level_stride,
    pool_instances,
)
from drkd_viz.distill.pixel_relation import PixelRelationLoss
from drkd_viz.errors import UserError

feats = random_features


def random_boxes(counts, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in counts:
        xy = torch.rand(n, 2, generator=g) * (size - 20)
        wh = 4 + torch.rand(n, 2, generator=g) * 16
        out.append(torch.cat([xy, xy + wh], dim=1))
    return out


# ---- graph reasoning unit --------------------------------------------------------------------------------
@pytest.mark.parametrize(("channels", "nodes"), [(32, 8), (64, 16), (128, 64)])
def test_glore_shapes(channels, nodes):
    unit = GraphReasoningUnit(channels, nodes)
    x = torch.randn(2, channels, 12, 10)
    parts = unit.parts(x)
    assert parts.relation.shape == x.shape
    assert parts.projection.shape == (2, nodes, 12, 10)
    assert parts.nodes.shape == (2, 2 * nodes, nodes)
    assert parts.node_mixing.shape == (nodes, nodes)
    assert torch.equal(unit(x), parts.relation)


def test_glore_normalisation_divides_node_features_by_hw():
    torch.manual_seed(0)
    normalized = GraphReasoningUnit(16, 4, normalize=True)
    raw = GraphReasoningUnit(16, 4, normalize=False)
    raw.load_state_dict(normalized.state_dict())
    x = torch.randn(1, 16, 6, 5)
    assert torch.allclose(raw.parts(x).nodes / 30, normalized.parts(x).nodes, atol=1e-6)


def test_glore_is_residual():
    unit = GraphReasoningUnit(16, 4)
    torch.nn.init.zeros_(unit.bn.weight)  # the relation branch switched off: G(x) = x
    unit.eval()
    x = torch.randn(1, 16, 5, 5)
    assert torch.allclose(unit(x), x)


# ---- pixel-wise loss --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("levels", "cs", "ct"),
    [(["P2", "P3", "P4", "P5", "P6"], 32, 64), (["P3", "P4", "P5", "P6", "P7"], 64, 64), (["P2"], 16, 128)],
)
@pytest.mark.parametrize("norm", ["mse", "frobenius"])
def test_pixel_relation_loss_shapes_and_gradients(levels, cs, ct, norm):
    loss_fn = PixelRelationLoss(levels, cs, ct, {lv: 8 for lv in levels}, norm=norm)
    s = {k: v.requires_grad_() for k, v in feats(levels, cs, size=128).items()}
    t = feats(levels, ct, size=128, seed=1)
    total, per_level = loss_fn(s, t)
    assert set(per_level) == set(levels) and total.ndim == 0
    assert torch.allclose(total, sum(per_level.values()))
    total.backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in s.values())
    assert loss_fn.adapters[levels[0]].weight.grad is not None
    assert loss_fn.teacher_units[levels[0]].state.weight.grad is not None  # G_t trains too


def test_pixel_norms_scale_as_documented():
    levels = ["P2"]
    loss_fn = PixelRelationLoss(levels, 8, 8, {"P2": 4}, norm="frobenius")
    s, t = feats(levels, 8, size=64), feats(levels, 8, size=64, seed=1)
    frob, _ = loss_fn(s, t)
    loss_fn.norm = "mse"
    mse, _ = loss_fn(s, t)
    numel = s["P2"].numel()
    assert torch.allclose(frob**2 / numel, mse, rtol=1e-5)


def test_shape_mismatch_names_the_level():
    loss_fn = PixelRelationLoss(["P3"], 8, 8, {"P3": 4})
    with pytest.raises(UserError, match=r"L_PR at level P3: student feature .* differ in batch or spatial size"):
        loss_fn({"P3": torch.randn(1, 8, 8, 8)}, {"P3": torch.randn(1, 8, 4, 4)})


def test_feature_imitation_is_mse_after_adapter():
    fi = FeatureImitationLoss(["P2", "P3"], 8, 16)
    s, t = feats(["P2", "P3"], 8), feats(["P2", "P3"], 16, seed=1)
    total, per = fi(s, t)
    expected = ((fi.adapters["P2"](s["P2"]) - t["P2"]) ** 2).mean()
    assert torch.allclose(per["P2"], expected) and torch.allclose(total, per["P2"] + per["P3"])


def test_pkd_against_a_hand_computation():
    """L_PKD = Σ_levels ½·mean((ẑ(f(S)) − ẑ(T))²), ẑ standardising each channel over N·H·W, written out
    with plain loops; ½·MSE of standardised channels is 1 − Pearson's r (up to (n−1)/n)."""
    pkd = PearsonImitationLoss(["P2", "P3"], 8, 16)
    s, t = feats(["P2", "P3"], 8), feats(["P2", "P3"], 16, seed=1)
    total, per = pkd(s, t)
    for lv in ("P2", "P3"):
        adapted = pkd.adapters[lv](s[lv]).detach()
        target = t[lv]
        squared, pearson = [], []
        for c in range(target.shape[1]):
            a, b = adapted[:, c].flatten(), target[:, c].flatten()
            n = a.numel()
            a_hat = (a - a.sum() / n) / (((a - a.mean()) ** 2).sum() / (n - 1)).sqrt()
            b_hat = (b - b.sum() / n) / (((b - b.mean()) ** 2).sum() / (n - 1)).sqrt()
            squared.append(((a_hat - b_hat) ** 2).sum())
            # Σ â² = n − 1 with the unbiased std, so ½·mean((â − b̂)²) = (n − 1)/n · (1 − r)
            pearson.append((n - 1) / n * (1 - torch.corrcoef(torch.stack([a, b]))[0, 1]))
        expected = 0.5 * torch.stack(squared).sum() / target.numel()
        torch.testing.assert_close(per[lv], expected, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(per[lv], torch.stack(pearson).mean(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(total, per["P2"] + per["P3"])
    # magnitude-free: scaling and shifting the teacher's channels changes nothing
    shifted = {lv: 7.0 * t[lv] + 3.0 for lv in t}
    torch.testing.assert_close(pkd(s, shifted)[0], total, rtol=1e-4, atol=1e-5)
    standardised = standardise_channels(t["P2"])
    torch.testing.assert_close(standardised.mean(dim=(0, 2, 3)), torch.zeros(16), atol=1e-5, rtol=0)
    total.backward()
    assert pkd.adapters["P2"].weight.grad is not None


# ---- relation module and instance losses: batched vs a straightforward per-image loop ------------------
def reference_instance_losses(loss_fn: InstanceRelationLoss, student, teacher, boxes, generator_seed=None):
    """Per image, one at a time: pool, relate, distance. Deliberately plain."""
    from torchvision.ops import roi_align

    def relate(module: RelationModule, r, weight_rows):
        logits = module.theta(r) @ module.phi(r).T
        if module.scale:
            logits = logits / math.sqrt(module.hidden)
        if module.filter_mode == "none":
            w = torch.ones_like(logits)
        elif module.filter_mode == "learned":
            q, k = module.gate_q(r), module.gate_k(r)
            w = 2 * torch.sigmoid(q @ k.T / math.sqrt(q.shape[1]) + module.gate_bias)
        else:
            weight, bias = weight_rows
            w = r @ weight.T + bias
        a = torch.softmax(w * logits, dim=1)
        z = module.out(a @ module.g(r)) + r if module.g is not None else None
        return a, z

    def dist(sq_sum, elements):
        return torch.sqrt(sq_sum) if loss_fn.norm == "frobenius" else sq_sum / elements

    gen = torch.Generator().manual_seed(generator_seed) if generator_seed is not None else None
    counts = [len(b) for b in boxes]
    total_k = sum(counts)
    ir_total, ins_total = torch.zeros(()), torch.zeros(())
    for lv in loss_fn.levels:
        stride = level_stride(lv)
        draws = {}
        if loss_fn.student_relations is not None and loss_fn.student_relations[lv].filter_mode == "reference":
            for side, dim in (("s", student[lv].shape[1]), ("t", teacher[lv].shape[1])):
                d = dim * loss_fn.roi_size**2
                bound = 1 / math.sqrt(d)
                draws[side] = (
                    (torch.rand(total_k, d, generator=gen) * 2 - 1) * bound,
                    (torch.rand(total_k, generator=gen) * 2 - 1) * bound,
                )
        ir_sq, ins_sq, ir_el, ins_el = [], [], 0, 0
        offset = 0
        for i, b in enumerate(boxes):
            n = len(b)
            if n == 0:
                continue
            rois = torch.cat([torch.zeros(n, 1), b], dim=1)
            r_s = roi_align(student[lv][i : i + 1], rois, 3, 1 / stride, 2, True).flatten(1)
            r_t = roi_align(teacher[lv][i : i + 1], rois, 3, 1 / stride, 2, True).flatten(1)
            sl = slice(offset, offset + n)
            if loss_fn.student_relations is not None:
                rows_s = (draws["s"][0][sl], draws["s"][1][sl]) if draws else None
                rows_t = (draws["t"][0][sl], draws["t"][1][sl]) if draws else None
                a_s, z_s = relate(loss_fn.student_relations[lv], r_s, rows_s)
                a_t, z_t = relate(loss_fn.teacher_relations[lv], r_t, rows_t)
                if loss_fn.target == "features":
                    ir_sq.append(((loss_fn.relation_adapters[lv](z_s) - z_t) ** 2).sum())
                    ir_el += z_t.numel()
                else:
                    ir_sq.append(((a_s - a_t) ** 2).sum())
                    ir_el += n * n
            if loss_fn.instance_adapters is not None:
                ins_sq.append(((loss_fn.instance_adapters[lv](r_s) - r_t) ** 2).sum())
                ins_el += r_t.numel()
            offset += n
        if loss_fn.norm == "frobenius":
            ir_total = ir_total + sum((dist(x, 0) for x in ir_sq), torch.zeros(()))
            ins_total = ins_total + sum((dist(x, 0) for x in ins_sq), torch.zeros(()))
        else:
            ir_total = ir_total + (sum(ir_sq) / ir_el if ir_sq else 0)
            ins_total = ins_total + (sum(ins_sq) / ins_el if ins_sq else 0)
    return ir_total, ins_total


@pytest.mark.parametrize("filter_mode", ["learned", "none", "reference"])
@pytest.mark.parametrize("target", ["features", "matrix"])
@pytest.mark.parametrize("norm", ["mse", "frobenius"])
def test_batched_instance_losses_equal_the_per_image_loop(filter_mode, target, norm):
    torch.manual_seed(0)
    levels = ["P2", "P3"]
    loss_fn = InstanceRelationLoss(levels, 16, 24, 3, filter_mode, target, norm, scale=True)
    if filter_mode == "learned":  # move the gate away from its neutral start so it matters
        for module in [*loss_fn.student_relations.values(), *loss_fn.teacher_relations.values()]:
            torch.nn.init.normal_(module.gate_q.weight, std=0.5)
            torch.nn.init.normal_(module.gate_k.weight, std=0.5)
    s, t = feats(levels, 16, batch=4), feats(levels, 24, batch=4, seed=1)
    boxes = random_boxes([5, 0, 1, 7])  # an empty image and a single-instance image included
    ir, ins, _ = loss_fn(s, t, boxes, generator=torch.Generator().manual_seed(3))
    ref_ir, ref_ins = reference_instance_losses(loss_fn, s, t, boxes, generator_seed=3)
    assert torch.allclose(ir, ref_ir, rtol=1e-5, atol=1e-6), (float(ir), float(ref_ir))
    assert torch.allclose(ins, ref_ins, rtol=1e-5, atol=1e-6), (float(ins), float(ref_ins))


def test_image_without_ground_truth_contributes_exactly_zero():
    torch.manual_seed(0)
    for norm in ("mse", "frobenius"):
        loss_fn = InstanceRelationLoss(["P2"], 8, 8, norm=norm)
        s, t = feats(["P2"], 8, batch=3), feats(["P2"], 8, batch=3, seed=1)
        with_empty = loss_fn(s, t, random_boxes([3, 0, 4]))
        s2, t2 = {k: v[[0, 2]] for k, v in s.items()}, {k: v[[0, 2]] for k, v in t.items()}
        without = loss_fn(s2, t2, random_boxes([3, 0, 4])[0:1] + random_boxes([3, 0, 4])[2:3])
        assert torch.equal(with_empty[0], without[0]) and torch.equal(with_empty[1], without[1])
        nothing = loss_fn(s, t, random_boxes([0, 0, 0]))
        assert float(nothing[0].detach()) == 0.0 and float(nothing[1].detach()) == 0.0


def test_relation_matrix_rows_sum_to_one_and_stay_inside_their_image():
    module = RelationModule(72, "learned")
    r = torch.randn(9, 72)
    index = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2, 2])
    out = module(r, index)
    assert torch.allclose(out.matrix.sum(1), torch.ones(9), atol=1e-6)
    same = index[:, None] == index[None, :]
    assert float(out.matrix.detach()[~same].abs().max()) == 0.0
    assert torch.equal(out.matrix[3, 3], torch.tensor(1.0))  # a single instance: A = [1]
    assert out.aggregated.shape == (9, 72)


def test_learned_filter_starts_neutral_and_reference_filter_is_redrawn():
    learned = RelationModule(36, "learned")
    r = torch.randn(5, 36)
    assert torch.allclose(learned.relation_filter(r), torch.ones(5, 5), atol=0.05)
    reference = RelationModule(36, "reference")
    assert not any("gate" in n for n, _ in reference.named_parameters())  # nothing to train
    assert not torch.equal(reference.relation_filter(r), reference.relation_filter(r))


def test_matrix_target_builds_no_aggregation_layers():
    loss_fn = InstanceRelationLoss(["P2"], 8, 8, target="matrix")
    assert loss_fn.relation_adapters is None and loss_fn.student_relations["P2"].g is None
    only_ins = InstanceRelationLoss(["P2"], 8, 8, relations=False)
    assert only_ins.student_relations is None and only_ins.instance_adapters is not None


def test_one_roi_align_call_pools_each_box_from_its_own_image():
    """The authors' bug: a one-element box list is read as batch index 0. Ours pools image k from image k."""
    feature = torch.stack([torch.full((1, 16, 16), float(i)) for i in range(3)])
    boxes = [torch.tensor([[8.0, 8.0, 40.0, 40.0]]) for _ in range(3)]
    rois, index = boxes_to_rois(boxes)
    assert rois.shape == (3, 5) and index.tolist() == [0, 1, 2]
    pooled = pool_instances(feature, rois, stride=4, size=3)
    assert pooled.mean(1).tolist() == [0.0, 1.0, 2.0]


def test_boxes_are_pooled_in_the_detectors_transformed_coordinates():
    """A box around a marked region of the *resized* image pools the marked values; the same box in the
    original coordinates misses them (the coordinate pitfall of spec §1)."""
    from drkd_viz.models.capture import record_forward
    from drkd_viz.models.factory import DetectorConfig, build_detector

    model = build_detector(
        DetectorConfig(
            num_classes=3, backbone="resnet10", fpn_channels=16, min_size=200, max_size=400, box_head_width=32
        )
    ).train()
    image = torch.rand(3, 100, 100)
    box = torch.tensor([[20.0, 20.0, 40.0, 40.0]])
    with record_forward(model) as rec:
        model([image], [{"boxes": box, "labels": torch.tensor([1])}])
    moved = rec.targets[0]["boxes"]
    assert torch.allclose(moved, box * 2)  # 100 px -> 200 px
    stride = 4
    marked = torch.zeros(1, 1, rec.images.tensors.shape[-2] // stride, rec.images.tensors.shape[-1] // stride)
    x1, y1, x2, y2 = (moved[0] / stride).round().int().tolist()
    marked[..., y1:y2, x1:x2] = 1.0
    rois, _ = boxes_to_rois([moved])
    assert torch.allclose(pool_instances(marked, rois, stride, 3), torch.ones(1, 9))
    rois_wrong, _ = boxes_to_rois([box])
    assert float(pool_instances(marked, rois_wrong, stride, 3).mean()) < 0.5


# ---- the distillation ladder's switches (docs/method.md) -------------------------------------------------


def test_zero_initialised_graph_unit_passes_its_input_through():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    unit = GraphReasoningUnit(16, 4, zero_init=True).train()
    parts = unit.parts(x)
    assert torch.equal(parts.relation, x) and residual_ratio(parts.residual, x) == 0.0
    (parts.relation * torch.randn_like(x)).sum().backward()
    assert unit.bn.weight.grad.abs().sum() > 0  # the branch can still grow: γ gets a gradient
    assert residual_ratio(GraphReasoningUnit(16, 4).train().parts(x).residual, x) > 0.5  # the default: full strength


def test_cosine_relation_is_parameter_free_block_diagonal_and_peaked():
    torch.manual_seed(0)
    r = torch.randn(7, 12)
    index = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    out = CosineRelation()(r, index)
    assert not list(CosineRelation().parameters())
    assert torch.allclose(out.matrix.sum(1), torch.ones(7))
    assert out.matrix[:3, 3:].abs().sum() == 0 and out.matrix[3:, :3].abs().sum() == 0
    assert torch.allclose(out.aggregated, r + out.matrix @ r)
    # the diagonal (cos = 1) dominates at τ = 0.1: far from the uniform rows of an untrained relation module
    assert relation_entropy_ratio(out.matrix, index) < 0.2
    assert relation_entropy_ratio(CosineRelation(temperature=1e3)(r, index).matrix, index) > 0.99
    same = CosineRelation()(torch.ones(3, 12), torch.zeros(3, dtype=torch.long)).matrix
    assert torch.allclose(same, torch.full((3, 3), 1 / 3))  # identical instances relate equally


def test_cosine_teacher_side_has_no_trainable_relation():
    loss = InstanceRelationLoss(["P2"], 8, 16, teacher_relation="cosine")
    assert all(isinstance(m, CosineRelation) for m in loss.teacher_relations.values())
    assert not list(loss.teacher_relations.parameters())
    student, teacher = feats(["P2"], 8), feats(["P2"], 16, seed=1)
    l_ir, _, _ = loss(student, teacher, random_boxes([3, 4]))
    l_ir.backward()
    assert all(p.grad is not None for p in loss.student_relations.parameters())


@pytest.mark.parametrize("target", ["features", "matrix"])
def test_conv_instance_adapter_is_a_1x1_conv_before_pooling(target):
    linear = InstanceRelationLoss(["P2", "P3"], 8, 16, target=target)
    conv = InstanceRelationLoss(["P2", "P3"], 8, 16, target=target, adapter="conv")
    adapters = [*conv.instance_adapters.values(), *(conv.relation_adapters or {}).values()]
    assert adapters and all(isinstance(a, PointwiseAdapter) for a in adapters)
    count = lambda modules: sum(p.numel() for m in modules for p in m.parameters())  # noqa: E731
    assert count(adapters) == len(adapters) * (8 * 16 + 16)  # against 72 x 144 + 144 for each linear one
    assert count([conv]) < count([linear])
    # pooling then the pointwise adapter equals the 1x1 conv applied to the feature, then pooling
    f = feats(["P2"], 8)["P2"]
    rois, _ = boxes_to_rois(random_boxes([3, 2]))
    adapter = conv.instance_adapters["P2"]
    conv2d = torch.nn.functional.conv2d(f, adapter.conv.weight[..., None], adapter.conv.bias)
    after = pool_instances(conv2d, rois, 4, 3)
    before = adapter(pool_instances(f, rois, 4, 3))
    assert torch.allclose(before, after, atol=1e-5)


def test_standardised_distances_ignore_the_teachers_scale():
    torch.manual_seed(0)
    student, teacher = feats(["P2", "P3"], 8), feats(["P2", "P3"], 16, seed=1)
    boxes = random_boxes([3, 4])
    scaled = {lv: 50 * t + 3 for lv, t in teacher.items()}
    pixel = PixelRelationLoss(["P2", "P3"], 8, 16, {"P2": 4, "P3": 4}, zero_init=True, standardize=True)
    assert float(pixel(student, teacher)[0]) == pytest.approx(float(pixel(student, scaled)[0]), rel=1e-4)
    plain = PixelRelationLoss(["P2", "P3"], 8, 16, {"P2": 4, "P3": 4}, zero_init=True)
    assert float(plain(student, scaled)[0]) > 100 * float(plain(student, teacher)[0])
    instance = InstanceRelationLoss(["P2", "P3"], 8, 16, relations=False, standardize=True)
    assert float(instance(student, teacher, boxes)[1]) == pytest.approx(
        float(instance(student, scaled, boxes)[1]), rel=1e-4
    )
