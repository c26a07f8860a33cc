"""The distiller in the training engine: frozen teacher, trained student and modules, both detector
families, presets, ablation switches, export without distillation modules, inspection API."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from helpers import tiny
from safetensors.torch import load_file

from drkd_viz.data.coco import CocoDetection, collate_detection
from drkd_viz.distill.config import (
    ABLATIONS,
    PAPER_TERM_WEIGHTS,
    REFERENCE_WEIGHTS,
    TERM_KEYS,
    TERMS,
    resolve_distill,
    weight_factor,
)
from drkd_viz.distill.distiller import DistillationObjective, build_distiller
from drkd_viz.engine.checkpoint import latest_checkpoint
from drkd_viz.engine.config import load_config
from drkd_viz.engine.trainer import train
from drkd_viz.errors import UserError
from drkd_viz.models.factory import DetectorConfig, build_detector


def _model(family: str, backbone: str, channels: int) -> dict:
    return {
        "family": family,
        "backbone": backbone,
        "fpn_channels": channels,
        "box_head_width": 64,
        "min_size": 128,
        "max_size": 160,
    }


@pytest.fixture(scope="module", params=["faster_rcnn", "retinanet"])
def teacher_run(request, quick_data, tmp_path_factory):
    family = request.param
    out = tmp_path_factory.mktemp("teachers") / family
    cfg = load_config(
        data=tiny(quick_data, model=_model(family, "resnet18", 48), train={"iterations": 12, "eval_split": "none"})
    )
    train(cfg, out, quiet=True)
    return out, family


def _student_cfg(quick_data, teacher: Path, family: str, **distill):
    return load_config(
        data=tiny(
            quick_data,
            model=_model(family, "resnet10", 32),
            distill={"method": "drkd", "teacher": str(teacher), **distill},
        )
    )


def _objective(quick_data, teacher_run, **distill) -> tuple[DistillationObjective, list, list]:
    teacher, family = teacher_run
    cfg = _student_cfg(quick_data, teacher, family, **distill)
    cfg.model.num_classes = 9
    objective = build_distiller(build_detector(cfg.model), cfg.distill, cfg.model, torch.device("cpu"))
    ds = CocoDetection.from_split(quick_data, "train")
    images, targets = collate_detection([ds[i] for i in range(3)])
    return objective, images, targets


def test_every_term_is_added_and_the_teacher_is_frozen(quick_data, teacher_run):
    torch.manual_seed(0)
    # DRKD's default terms and the paper's three, all at once
    objective, images, targets = _objective(quick_data, teacher_run, **PAPER_TERM_WEIGHTS)
    teacher_before = {k: v.clone() for k, v in objective.teacher.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in objective.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    objective.train()
    assert not objective.teacher.training  # stays in eval mode inside a training objective
    for _ in range(2):
        losses = objective(images, targets)
        assert {"loss_pr", "loss_ir", "loss_ins", "loss_fi", "loss_ira", "loss_pa"} <= set(losses)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        # student, both sides' relation units and the adapters learn; the teacher gets nothing
        assert objective.student.backbone.body.conv1.weight.grad.abs().sum() > 0
        for module in (
            objective.pixel.student_units,
            objective.pixel.teacher_units,
            objective.pixel.adapters,
            objective.instance.student_relations,
            objective.instance.teacher_relations,
            objective.instance.relation_adapters,
            objective.instance.instance_adapters,
            objective.imitation.adapters,
        ):
            grads = [p.grad for p in module.parameters()]
            assert grads and all(g is not None for g in grads)
        assert all(p.grad is None and not p.requires_grad for p in objective.teacher.parameters())
        optimizer.step()
    for k, v in objective.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k  # weights and BatchNorm statistics unchanged
    assert not list(objective.anchored_instance.parameters()) and not list(objective.pixel_affinity.parameters())
    assert objective.formula() == (
        "L = L_det + c(t)·(6·L_PR + 0.05·L_IR + 0.05·L_INS + 1·L_IRA + 5·L_PA + 3·L_FI),  c(t) = ½(1 + cos πt), "
        "t = step / steps"
    )
    assert {"pr_" + lv for lv in objective.settings.pr_levels} <= set(objective.metrics())


def test_cosine_weight_schedule_fades_every_term_to_zero(quick_data, teacher_run):
    assert weight_factor("constant", 0.7) == 1.0
    assert [weight_factor("cosine", t) for t in (0.0, 0.5, 1.0)] == pytest.approx([1.0, 0.5, 0.0])
    objective, images, targets = _objective(quick_data, teacher_run, weight_schedule="cosine", **PAPER_TERM_WEIGHTS)
    objective.train()
    seen = {}
    for progress in (0.0, 0.5, 1.0):
        objective.set_progress(progress)
        torch.manual_seed(0)
        seen[progress] = objective(images, targets)
    seen = {t: {k: float(v.detach()) for k, v in losses.items()} for t, losses in seen.items()}
    relation_terms = ("loss_pr", "loss_ir", "loss_ins", "loss_ira", "loss_pa", "loss_fi")
    for term in relation_terms:
        assert seen[0.5][term] == pytest.approx(0.5 * seen[0.0][term], rel=1e-4)
        assert seen[1.0][term] == 0.0 and seen[0.0][term] > 0
    for term in set(seen[0.0]) - set(relation_terms):  # the detection loss keeps its full weight
        assert seen[1.0][term] == pytest.approx(seen[0.0][term], rel=1e-4), term
    assert objective.formula().startswith("L = L_det + c(t)·(6·L_PR")
    with pytest.raises(UserError, match="weight_schedule"):
        _student_cfg(quick_data, teacher_run[0], teacher_run[1], weight_schedule="linear")


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_each_ablation_changes_what_it_claims_and_nothing_else(quick_data, teacher_run, name):
    teacher, family = teacher_run
    levels = DetectorConfig(family=family).levels
    base = resolve_distill({"method": "drkd", "teacher": str(teacher)}, levels)
    ablated = resolve_distill({"method": "drkd", "teacher": str(teacher), **ABLATIONS[name]}, levels)
    base, ablated_dict = base.to_dict(), ablated.to_dict()
    changed = {k for k in base if base[k] != ablated_dict[k]}
    assert changed == {k for k, v in ABLATIONS[name].items() if base[k] != v}
    torch.manual_seed(0)
    objective, images, targets = _objective(quick_data, teacher_run, **ABLATIONS[name])
    losses = objective(images, targets)
    assert ("loss_pr" in losses) == (ablated.pr_weight > 0)
    assert ("loss_ir" in losses) == (ablated.ir_weight > 0)
    assert ("loss_ins" in losses) == (ablated.ins_weight > 0)
    if name == "ir_no_filter":
        module = objective.instance.student_relations[ablated.ir_levels[0]]
        assert module.filter_mode == "none" and not hasattr(module, "gate_q")
    if name == "ir_reference_filter":
        module = objective.instance.student_relations[ablated.ir_levels[0]]
        assert module.filter_mode == "reference"
    if name == "ir_matrix":
        assert objective.instance.relation_adapters is None
    if name == "pr_only":
        assert getattr(objective, "instance", None) is None


@pytest.mark.parametrize(
    "distill",
    [
        {},
        {"method": "feature_imitation"},
        {"method": "pkd"},
        {"method": "relation"},
        {"method": "drkd", "fi_weight": 3.0, "ira_weight": 1.0, "pa_weight": 5.0},
        {"method": "relation", "rotate_teacher": True, "shuffle_relations": True},
        *({"method": "drkd", **changes} for changes in ABLATIONS.values() if changes),
    ],
    ids=[
        "drkd",
        "feature_imitation",
        "pkd",
        "relation",
        "drkd-imitation-relations",
        "relation-controls",
        *(name for name, changes in ABLATIONS.items() if changes),
    ],
)
def test_the_formula_lists_exactly_the_terms_that_produce_loss_keys(quick_data, teacher_run, distill):
    """One list of terms drives the modules built, the loss keys added and the printed equation: no term is
    printed that is not computed, and none is computed that is not printed."""
    torch.manual_seed(0)
    objective, images, targets = _objective(quick_data, teacher_run, **distill)
    losses = objective(images, targets)
    added = [key for key in losses if key in TERM_KEYS]
    assert added == [term.key for term in objective.terms] and added
    printed = objective.formula()
    for term in TERMS:
        shown = re.search(rf"·{term.symbol}\b", printed) is not None  # L_IR is not L_IRA
        assert shown == (term.key in added), (term, printed)
        built = getattr(objective, term.module.attribute, None) is not None
        assert built == any(t.module is term.module for t in objective.terms)


def test_the_distill_section_stays_typed_from_yaml_to_the_objective(tmp_path):
    """load_config turns ``distill:`` into a DistillConfig with every switch set (nothing left for the modules to
    default); resolving again changes nothing; config.yaml round-trips it; method none means no distillation."""
    from drkd_viz.distill.config import DistillConfig
    from drkd_viz.engine.config import dump_config

    cfg = load_config(data={"distill": {"method": "drkd", "teacher": "teacher-run", "pr_weight": 2}})
    assert isinstance(cfg.distill, DistillConfig)
    unset = [f.name for f in dataclasses.fields(cfg.distill) if getattr(cfg.distill, f.name) is None]
    assert unset == ["teacher_model"]  # only needed with a weights file
    assert cfg.distill.pr_weight == 2.0 and cfg.distill.pkd_weight == 0.0 and cfg.distill.ir_levels == ["P2", "P3"]
    assert resolve_distill(cfg.distill, cfg.model.levels) == cfg.distill
    saved = tmp_path / "config.yaml"
    saved.write_text(dump_config(cfg))
    assert load_config(saved).distill == cfg.distill
    assert load_config(data={"distill": {"method": "none"}}).distill is None
    # the preset's mutable defaults are copied, not shared between runs
    cfg.distill.nodes["P2"] = 1
    assert load_config(data={"distill": {"method": "drkd", "teacher": "t"}}).distill.nodes["P2"] == 32


def test_reference_preset_has_the_authors_constants(quick_data, teacher_run):
    teacher, _ = teacher_run
    ref = resolve_distill(
        {"method": "drkd", "teacher": str(teacher), "preset": "reference"}, ["P2", "P3", "P4", "P5", "P6"]
    )
    assert (ref.pr_weight, ref.ir_weight, ref.ins_weight) == (1e-3, 4e-3, 2.4e-3)
    assert ref.pr_levels == ["P2", "P3", "P4", "P5", "P6"] and ref.ir_levels == ["P2", "P3"]
    assert [ref.nodes[lv] for lv in ref.pr_levels] == [64, 64, 256, 256, 256]
    assert ref.roi_size == 3 and ref.norm == "frobenius" and ref.glore_normalize is False
    assert ref.relation_filter == "reference" and ref.ir_target == "features"
    assert ref.relation_scale is False
    assert REFERENCE_WEIGHTS["drkd"] == {
        "pr_weight": 0.001,
        "ir_weight": 0.004,
        "ins_weight": 0.0024,
    }


# resolve_distill of the reference preset's drkd section for Faster R-CNN levels, as it was before the anchored
# relation terms existed (commit e158d4e): every new switch must leave it as it was
REFERENCE_BEFORE_ANCHORED_TERMS = {
    "clip": "joint",
    "fi_levels": ["P2", "P3", "P4", "P5", "P6"],
    "fi_weight": 0.0,
    "glore_normalize": False,
    "glore_zero_init": False,
    "ins_weight": 0.0024,
    "instance_adapter": "linear",
    "ir_levels": ["P2", "P3"],
    "ir_target": "features",
    "ir_weight": 0.004,
    "method": "drkd",
    "nodes": {"P2": 64, "P3": 64, "P4": 256, "P5": 256, "P6": 256, "P7": 256},
    "norm": "frobenius",
    "pkd_levels": ["P2", "P3", "P4", "P5", "P6"],
    "pkd_weight": 0.0,
    "pr_levels": ["P2", "P3", "P4", "P5", "P6"],
    "pr_weight": 0.001,
    "preset": "reference",
    "relation_filter": "reference",
    "relation_scale": False,
    "roi_size": 3,
    "standardize": False,
    "teacher_model": None,
    "teacher_relation": "learned",
    "weight_schedule": "constant",
}


def test_the_reference_preset_is_unchanged_by_the_new_terms():
    ref = resolve_distill({"method": "drkd", "teacher": "t", "preset": "reference"}, ["P2", "P3", "P4", "P5", "P6"])
    resolved = ref.to_dict()
    assert {k: resolved[k] for k in REFERENCE_BEFORE_ANCHORED_TERMS} == REFERENCE_BEFORE_ANCHORED_TERMS
    new = set(resolved) - set(REFERENCE_BEFORE_ANCHORED_TERMS) - {"teacher"}
    assert all(
        resolved[k] in (0.0, False)
        for k in new
        if k.endswith("_weight") or k in ("rotate_teacher", "shuffle_relations")
    )
    assert {term.key for term in TERMS if ref.weight(term.weight) > 0} == {"loss_pr", "loss_ir", "loss_ins"}


def test_what_won_on_val_is_the_default_and_reference_keeps_the_authors_init(quick_data, teacher_run):
    """The ladder's kept changes (README, "How the ladder went"): zero-initialised graph units and the λ searched
    on val; the reference preset keeps the authors' γ = 1 units and their λ."""
    teacher, _ = teacher_run
    levels = ["P2", "P3", "P4", "P5", "P6"]
    default = resolve_distill({"method": "drkd", "teacher": str(teacher)}, levels)
    reference = resolve_distill({"method": "drkd", "teacher": str(teacher), "preset": "reference"}, levels)
    assert default.glore_zero_init is True and reference.glore_zero_init is False
    # round 6: DRKD is feature imitation plus the anchored relations; the paper's terms keep their searched λ for
    # the ablations, the reference preset the authors'
    assert (default.fi_weight, default.ira_weight, default.pa_weight) == (3.0, 1.0, 5.0)
    assert default.pr_weight == default.ir_weight == default.ins_weight == 0.0
    assert PAPER_TERM_WEIGHTS["pr_weight"] == 6.0 and reference.pr_weight == 1e-3
    imitation = resolve_distill({"method": "feature_imitation", "teacher": str(teacher)}, levels)
    assert imitation.fi_weight == 3.0
    for preset, gamma in (("default", 0.0), ("reference", 1.0)):
        objective, _, _ = _objective(quick_data, teacher_run, preset=preset, pr_weight=PAPER_TERM_WEIGHTS["pr_weight"])
        units = [*objective.pixel.student_units.values(), *objective.pixel.teacher_units.values()]
        assert all(torch.all(unit.bn.weight == gamma) for unit in units), preset
        unit = next(iter(objective.pixel.teacher_units.values()))  # the finest level (P2, or P3 for RetinaNet)
        x = torch.randn(2, unit.bn.num_features, 8, 8)
        passes_through = torch.allclose(unit.train()(x), x)
        assert passes_through == (preset == "default")  # G(x) = x at the start only with the zero init


def test_distill_section_errors_are_clear(quick_data, teacher_run, tmp_path):
    teacher, family = teacher_run
    with pytest.raises(UserError, match="unknown key 'relation_filtr' \\(did you mean 'relation_filter'\\?\\)"):
        _student_cfg(quick_data, teacher, family, relation_filtr="none")
    with pytest.raises(UserError, match="needs a teacher"):
        load_config(data={"distill": {"method": "drkd"}})
    with pytest.raises(UserError, match=r"distill.ir_levels: \['P9'\] are not levels of this detector"):
        _student_cfg(quick_data, teacher, family, ir_levels=["P9"])
    other = "retinanet" if family == "faster_rcnn" else "faster_rcnn"
    cfg = _student_cfg(quick_data, teacher, other)
    cfg.model.num_classes = 9
    with pytest.raises(UserError, match="must be of the same family"):
        build_distiller(build_detector(cfg.model), cfg.distill, cfg.model, torch.device("cpu"))
    cfg = _student_cfg(quick_data, teacher, family)
    cfg.model.num_classes, cfg.model.min_size = 9, 144
    with pytest.raises(UserError, match="min_size: student 144 vs teacher 128"):
        build_distiller(build_detector(cfg.model), cfg.distill, cfg.model, torch.device("cpu"))


@pytest.fixture(scope="module")
def drkd_run(quick_data, teacher_run, tmp_path_factory):
    teacher, family = teacher_run
    cfg = load_config(
        data=tiny(
            quick_data,
            model=_model(family, "resnet10", 32),
            optim={"lr": 0.01, "warmup_iters": 5},
            train={"iterations": 40, "batch_size": 4, "checkpoint_every": 20, "eval_split": "val"},
            # constant λ: under the default cosine decay every weighted term would fall even without learning
            # DRKD's default terms and the paper's three
            distill={"method": "drkd", "teacher": str(teacher), "weight_schedule": "constant", **PAPER_TERM_WEIGHTS},
        )
    )
    out = tmp_path_factory.mktemp("drkd") / family
    return out, cfg


def test_short_training_lowers_every_distillation_term_and_exports_a_plain_student(drkd_run):
    out, cfg = drkd_run
    manifest = train(cfg, out, quiet=True)
    assert manifest["status"] == "finished" and manifest["formula"].startswith("L = L_det + ")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    for term in ("loss_pr", "loss_ir", "loss_ins", "loss_fi", "loss_ira", "loss_pa"):
        first = sum(r[term] for r in rows[:8]) / 8
        last = sum(r[term] for r in rows[-8:]) / 8
        assert last < first, f"{term}: {first:.4f} -> {last:.4f}"
    # the checkpoint holds student + distillation modules, never the teacher
    keys = load_file(str(latest_checkpoint(out / "checkpoints").path / "model.safetensors")).keys()
    assert any(k.startswith("pixel.") for k in keys) and any(k.startswith("instance.") for k in keys)
    assert not any(k.startswith("teacher.") for k in keys)
    # the export is the plain detector
    exported = load_file(str(out / "export" / "student.safetensors"))
    assert set(exported) == set(build_detector(load_config(out / "config.yaml").model).state_dict())
    assert json.loads((out / "eval" / "val" / "metrics.json").read_text())["AP"] >= 0


def test_feature_imitation_method(quick_data, teacher_run, tmp_path):
    teacher, family = teacher_run
    cfg = load_config(
        data=tiny(
            quick_data,
            model=_model(family, "resnet10", 32),
            train={"iterations": 3, "eval_split": "none"},
            distill={"method": "feature_imitation", "teacher": str(teacher)},
        )
    )
    manifest = train(cfg, tmp_path / "fi", quiet=True)
    # the default preset's cosine schedule applies to feature imitation too (the same treatment as DRKD)
    assert manifest["formula"] == "L = L_det + c(t)·(3·L_FI),  c(t) = ½(1 + cos πt), t = step / steps"
    row = json.loads((tmp_path / "fi" / "metrics.jsonl").read_text().splitlines()[0])
    assert "loss_fi" in row and "loss_pr" not in row


def test_teacher_from_a_weights_file(quick_data, teacher_run):
    teacher, family = teacher_run
    info = json.loads((teacher / "export" / "student.json").read_text())
    cfg = _student_cfg(quick_data, teacher / "export" / "student.safetensors", family, teacher_model=info["detector"])
    cfg.model.num_classes = 9
    objective = build_distiller(build_detector(cfg.model), cfg.distill, cfg.model, torch.device("cpu"))
    reference = load_file(str(teacher / "export" / "student.safetensors"))
    assert torch.equal(
        objective.teacher.state_dict()["backbone.body.conv1.weight"], reference["backbone.body.conv1.weight"]
    )
    with pytest.raises(UserError, match="needs its architecture"):
        build_distiller(
            build_detector(cfg.model),
            dataclasses.replace(cfg.distill, teacher_model=None),
            cfg.model,
            torch.device("cpu"),
        )


def test_inspection_api_for_teacher_drkd_and_baseline_students(quick_data, teacher_run, drkd_run):
    from drkd_viz.analysis.models import load_relation_units
    from drkd_viz.distill.inspection import inspect_image
    from drkd_viz.models.weights import load_exported_detector

    out, cfg = drkd_run
    if not (out / "export").is_dir():
        train(cfg, out, quiet=True)
    teacher_dir, _ = teacher_run
    ds = CocoDetection.from_split(quick_data, "val")
    image, target = ds[0]
    boxes = target["boxes"]
    teacher, _ = load_exported_detector(teacher_dir)
    student, _ = load_exported_detector(out)
    baseline = build_detector(load_config(out / "config.yaml").model)  # an untrained stand-in for a baseline
    t_units, s_units = load_relation_units(out, "teacher"), load_relation_units(out, "student")
    views = {
        "teacher": inspect_image(teacher, image, boxes, t_units),
        "drkd": inspect_image(student, image, boxes, s_units),
        "baseline": inspect_image(baseline, image, boxes, s_units),
    }
    settings = cfg.distill
    for view in views.values():
        assert view.image_size == tuple(image.shape[-2:]) and "units of" in view.units
        for lv in settings.pr_levels:
            level = view.levels[lv]
            m = settings.nodes[lv]
            assert level.relation.shape == level.feature.shape
            assert level.projection.shape == (m, *level.feature.shape[-2:])
            assert level.nodes.shape == (2 * m, m) and level.node_mixing.shape == (m, m)
        for lv in settings.ir_levels:
            inst = view.instances[lv]
            n = len(boxes)
            assert inst.matrix.shape == (n, n) and inst.filter.shape == (n, n)
            assert torch.allclose(inst.matrix.sum(1), torch.ones(n), atol=1e-5)
            assert torch.equal(inst.boxes, boxes)
        assert set(view.detections) == {"boxes", "scores", "labels"}
    # the DRKD student and the baseline are seen through the same units: only their features differ
    lv = settings.pr_levels[0]
    assert views["drkd"].units == views["baseline"].units
    assert not torch.equal(views["drkd"].levels[lv].relation, views["baseline"].levels[lv].relation)
    with pytest.raises(UserError, match="is not a DRKD run"):
        load_relation_units(teacher_dir)


def test_pkd_method(quick_data, teacher_run, tmp_path):
    """PKD trains in the same engine: only its own term, logged per level, with the other weights at 0."""
    teacher, family = teacher_run
    cfg = load_config(
        data=tiny(
            quick_data,
            model=_model(family, "resnet10", 32),
            train={"iterations": 3, "eval_split": "none"},
            distill={"method": "pkd", "teacher": str(teacher)},
        )
    )
    assert cfg.distill.pkd_weight > 0
    assert all(cfg.distill.weight(k) == 0 for k in ("pr_weight", "ir_weight", "ins_weight", "fi_weight"))
    manifest = train(cfg, tmp_path / "pkd", quiet=True)
    assert "L_PKD" in manifest["formula"] and "L_FI" not in manifest["formula"]
    row = json.loads((tmp_path / "pkd" / "metrics.jsonl").read_text().splitlines()[0])
    assert "loss_pkd" in row and "loss_fi" not in row and "loss_pr" not in row
    assert any(k.startswith("pkd_P") for k in row)


def test_separate_clip_gives_the_distillation_modules_their_own_group(quick_data, teacher_run, tmp_path):
    """distill.clip=separate: the student is clipped alone, first; the relation modules are a second group,
    clipped on their own and logged; the authors' single clip stays the default and the reference."""
    objective, _, _ = _objective(quick_data, teacher_run, **PAPER_TERM_WEIGHTS)
    assert len(objective.parameter_groups()) == 1
    assert resolve_distill({"method": "drkd", "teacher": "t", "preset": "reference"}, ["P2", "P3"]).clip == "joint"
    objective, _, _ = _objective(quick_data, teacher_run, clip="separate", **PAPER_TERM_WEIGHTS)
    student, modules = objective.parameter_groups()
    assert {id(p) for p in student} == {id(p) for p in objective.student.parameters() if p.requires_grad}
    relation_modules = [m for loss in objective.loss_modules for m in loss.parameters()]
    assert {id(p) for p in modules} == {id(p) for p in relation_modules}
    teacher, family = teacher_run
    cfg = load_config(
        data=tiny(
            quick_data,
            model=_model(family, "resnet10", 32),
            train={"iterations": 2, "eval_split": "none"},
            optim={"clip_grad_norm": 1e-3},
            distill={"method": "drkd", "teacher": str(teacher), "clip": "separate"},
        )
    )
    train(cfg, tmp_path / "separate", quiet=True)
    row = json.loads((tmp_path / "separate" / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 < row["clip_factor"] < 1 and 0 < row["clip_factor_group1"] < 1
    assert row["grad_norm"] != row["grad_norm_group1"]


@pytest.mark.parametrize(
    "switches",
    [
        {"teacher_relation": "cosine"},
        {"glore_zero_init": True},
        {"instance_adapter": "conv"},
        {"standardize": True},
        {"teacher_relation": "cosine", "ir_target": "matrix", "instance_adapter": "conv"},
    ],
)
def test_ladder_switches_train(quick_data, teacher_run, switches):
    objective, images, targets = _objective(quick_data, teacher_run, **switches, **PAPER_TERM_WEIGHTS)
    objective.train()
    losses = objective(images, targets)
    assert {"loss_pr", "loss_ir", "loss_ins"} <= set(losses)
    sum(losses.values()).backward()
    trainable = [p for p in objective.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable)  # nothing built that no term trains


def test_fitted_teacher_units_are_fitted_once_frozen_and_distilled_as_residuals(quick_data, teacher_run):
    """pr_teacher_units: fitted asks for units fitted on the teacher's own detection loss (a clear error names the
    command while they are missing); the fit changes only the units, is cached, and the distiller keeps them
    frozen (no gradient, BatchNorm in eval) while L_PR distils only their residual G(x) − x."""
    from drkd_viz.distill.fitted_units import unit_fit, units_file
    from drkd_viz.engine.fit_units import fit_teacher_units

    teacher, family = teacher_run
    switches = {"pr_weight": 6.0, "pr_teacher_units": "fitted", "pr_target": "residual", "pr_fit_iterations": 3}
    cfg = _student_cfg(quick_data, teacher, family, **switches)
    fit = unit_fit(cfg.distill)
    if units_file(teacher, fit).exists():
        units_file(teacher, fit).unlink()
    with pytest.raises(UserError, match="drkd-viz fit-units --teacher"):
        _objective(quick_data, teacher_run, **switches)
    teacher_weights = (teacher / "export" / "student.safetensors").read_bytes()
    path = fit_teacher_units(teacher, fit, progress=False)
    assert path == units_file(teacher, fit) and path.with_suffix(".json").is_file()
    assert (teacher / "export" / "student.safetensors").read_bytes() == teacher_weights  # the teacher is untouched
    stamp = path.stat().st_mtime_ns
    assert fit_teacher_units(teacher, fit, progress=False) == path and path.stat().st_mtime_ns == stamp  # cached
    torch.manual_seed(0)
    objective, images, targets = _objective(quick_data, teacher_run, **switches)
    fitted = objective.pixel.teacher_units
    assert not any(p.requires_grad for p in fitted.parameters())
    assert all(p is not None for p in objective.pixel.student_units.parameters())
    objective.train()
    assert not any(m.training for m in fitted.modules())
    # the fitted units' γ left zero: fitting moved them (at least one level adds something to x)
    assert any(float(unit.bn.weight.abs().max()) > 0 for unit in fitted.values())
    objective.watch(True)
    losses = objective(images, targets)
    losses["loss_pr"].backward()
    assert all(p.grad is None for p in fitted.parameters())
    logged = objective.metrics()
    level = cfg.distill.pr_levels[0]
    assert 0.0 <= logged[f"t_node_purity_max_{level}"] <= 1.0 and 0.0 <= logged[f"t_node_entropy_{level}"] <= 1.0
