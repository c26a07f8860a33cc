"""The distillation diagnostics on hand-made cases, and their logging in a real training run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from drkd_viz.distill.diagnostics import gradient_report, relation_entropy_ratio, residual_ratio, term_gradients
from drkd_viz.distill.glore import GraphReasoningUnit
from drkd_viz.distill.instance_relation import InstanceRelationLoss
from drkd_viz.distill.pixel_relation import PixelRelationLoss


def test_uniform_rows_give_entropy_ratio_one_and_one_hot_rows_zero():
    index = torch.tensor([0, 0, 0, 1, 1])
    uniform = torch.zeros(5, 5)
    uniform[:3, :3] = 1 / 3
    uniform[3:, 3:] = 1 / 2
    assert relation_entropy_ratio(uniform, index) == pytest.approx(1.0)
    one_hot = torch.zeros(5, 5)
    one_hot[torch.arange(5), torch.tensor([1, 2, 0, 4, 3])] = 1.0
    assert relation_entropy_ratio(one_hot, index) == pytest.approx(0.0, abs=1e-6)
    # a row (0.5, 0.5, 0) of a 3-instance image: log 2 / log 3; images of one instance are left out
    half = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    rows = relation_entropy_ratio(half, torch.tensor([0, 0, 0, 1]))
    assert rows == pytest.approx((2 * math.log(2) / math.log(3) + 0) / 3, rel=1e-5)
    assert relation_entropy_ratio(torch.ones(2, 2), torch.tensor([0, 1])) is None  # no image with two


def test_pass_through_unit_gives_residual_ratio_zero():
    torch.manual_seed(0)
    unit = GraphReasoningUnit(8, 4).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        unit.bn.weight.zero_()  # BN(W_ext·Y) = β = 0: G(x) = x
        unit.bn.bias.zero_()
    parts = unit.parts(x)
    assert residual_ratio(parts.residual, x) == 0.0
    torch.testing.assert_close(parts.relation, x)
    with torch.no_grad():
        unit.bn.bias.fill_(1.0)  # adds 1 everywhere: ‖1‖ / ‖x‖
    expected = math.sqrt(x.numel()) / float(x.norm())
    assert residual_ratio(unit.parts(x).residual, x) == pytest.approx(expected, rel=1e-5)


def test_gradient_norms_and_cosines_of_two_known_terms():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    # ∇(3·w0) = (3, 0); ∇(w0 + w1) = (1, 1); ∇(−3·w0) = (−3, 0)
    terms = {"loss_det": 3 * w[0], "loss_a": w.sum(), "loss_b": -3 * w[0]}
    report = gradient_report(term_gradients(terms, [w]), reference="loss_det")
    assert report["grad_loss_det"] == pytest.approx(3.0)
    assert report["grad_loss_a"] == pytest.approx(math.sqrt(2))
    assert report["cos_loss_a"] == pytest.approx(1 / math.sqrt(2))
    assert report["cos_loss_b"] == pytest.approx(-1.0)
    assert "cos_loss_det" not in report
    assert w.grad is None  # .grad is left to the real backward
    unused = torch.nn.Parameter(torch.zeros(1))
    report = gradient_report(term_gradients({"loss_det": 3 * w[0], "loss_c": unused.sum() * 0}, [w]))
    assert report["grad_loss_c"] == 0.0 and report["cos_loss_c"] == 0.0


def test_losses_record_teacher_side_collapse_only_when_asked():
    torch.manual_seed(0)
    feats_s = {"P2": torch.randn(2, 8, 16, 16), "P3": torch.randn(2, 8, 8, 8)}
    feats_t = {"P2": torch.randn(2, 16, 16, 16), "P3": torch.randn(2, 16, 8, 8)}
    boxes = [
        torch.tensor([[4.0, 4.0, 30.0, 30.0], [20.0, 8.0, 50.0, 40.0], [40.0, 40.0, 60.0, 60.0]]),
        torch.zeros(0, 4),
    ]
    pixel = PixelRelationLoss(["P2", "P3"], 8, 16, {"P2": 4, "P3": 4})
    instance = InstanceRelationLoss(["P2"], 8, 16, filter_mode="none")
    pixel(feats_s, feats_t)
    instance(feats_s, feats_t, boxes)
    assert pixel.last_diagnostics == {} and instance.last_diagnostics == {}
    pixel.collect_diagnostics = instance.collect_diagnostics = True
    before, _ = pixel(feats_s, feats_t)
    instance(feats_s, feats_t, boxes)
    assert set(pixel.last_diagnostics) == {"t_residual_P2", "t_residual_P3"}
    assert all(v > 0 for v in pixel.last_diagnostics.values())  # BN(W_ext·Y) starts at full strength
    assert set(instance.last_diagnostics) == {"t_entropy_P2", "s_entropy_P2"}
    assert all(0.0 <= v <= 1.0 for v in instance.last_diagnostics.values())
    pixel.collect_diagnostics = False
    after, _ = pixel(feats_s, feats_t)
    torch.testing.assert_close(before, after)  # watching changes no value


def test_a_distillation_run_logs_its_diagnostics_every_log_every_iterations(quick_runs, tmp_path):
    """A short DRKD run against the quick pipeline's teacher: gradient norms and cosines, the clip factor
    and the teacher-side indicators appear on the logged iterations, and the weights are the same as a
    run that logs nothing (watching does not change training)."""
    from drkd_viz.engine.checkpoint import latest_checkpoint
    from drkd_viz.engine.config import load_config
    from drkd_viz.engine.trainer import train
    from drkd_viz.models.weights import read_safetensors

    config = quick_runs / "drkd-s0" / "config.yaml"
    folders = {}
    for log_every in (2, 0):
        cfg = load_config(
            config,
            overrides=[
                "train.iterations=4",
                f"train.log_every={log_every}",
                "train.eval_split=none",
                "train.checkpoint_every=100",
                "distill.weight_schedule=constant",  # a cosine λ is 0 at the last step, and so is its gradient
                # the paper's terms beside DRKD's default ones, so that every diagnostic appears
                "distill.pr_weight=6.0",
                "distill.ir_weight=0.05",
                "distill.ins_weight=0.05",
            ],
        )
        folders[log_every] = tmp_path / f"log{log_every}"
        train(cfg, folders[log_every], quiet=True)
    records = [json.loads(line) for line in (folders[2] / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if "iter" in r and "loss" in r]
    watched = [r for r in records if r["iter"] % 2 == 0]
    assert len(watched) == 2
    for record in watched:
        terms = ("loss_pr", "loss_ir", "loss_ins", "loss_fi", "loss_ira", "loss_pa")
        for term in ("loss_det", *terms):
            assert record[f"grad_{term}"] > 0
        for term in terms:
            assert -1.0 <= record[f"cos_{term}"] <= 1.0
        assert any(k.startswith("t_residual_") for k in record)
        assert 0.0 <= record["ira_auc_t_P2"] <= 1.0 and record["ira_row_l1_P2"] >= 0
        assert 0.0 < record["clip_factor"] <= 1.0
    assert not any("grad_loss_det" in r for r in records if r["iter"] % 2)
    weights = [
        read_safetensors(latest_checkpoint(folders[k] / "checkpoints").path / "model.safetensors") for k in (2, 0)
    ]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0, msg=key)
