"""The experiments pipeline (quick preset end to end, caching, stale runs), the report, and a dry run of
the coco-paper configs on the real mini COCO set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from drkd_viz.engine.config import load_config
from drkd_viz.errors import UserError
from drkd_viz.evaluation import evaluate_detections
from drkd_viz.experiments.pipeline import PRESETS, plan, run_pipeline
from drkd_viz.experiments.report import markdown, read_val_record, val_appendix
from drkd_viz.resources import configs_dir
from drkd_viz.utils.stats import paired_difference, summarize

REPO = Path(__file__).resolve().parents[1]


def test_t_intervals():
    s = summarize([0.30, 0.32, 0.34])
    assert s.mean == pytest.approx(0.32) and s.std == pytest.approx(0.02)
    assert (s.high - s.mean) == pytest.approx(4.303 * 0.02 / 3**0.5)
    one = summarize([0.5])
    assert one.std == 0.0 and one.to_json()["ci95"] == [None, None]
    d = paired_difference([0.4, 0.5], [0.3, 0.45])
    assert d.mean == pytest.approx(0.075)


@pytest.fixture(scope="module")
def quick_pipeline(quick_runs):
    return quick_runs, json.loads((quick_runs / "reports" / "quick" / "report.json").read_text())


def test_the_study_report_lists_every_variant_tried_on_val():
    record = configs_dir() / PRESETS["study"].val_record
    rows = read_val_record(record)
    assert rows and len({r["name"] for r in rows}) == len(rows)
    for row in rows:
        assert {"name", "starts_from", "overrides", "seed", "iterations", "val"} <= set(row)
        assert 0.0 <= row["val"]["AP"] <= 1.0 and 0.0 <= row["val"]["APs"] <= 1.0
    table = "\n".join(val_appendix(rows))
    assert "every variant tried on val" in table
    for row in rows:  # the losing variants too
        assert f"| {row['name']} |" in table and f"{row['val']['AP'] * 100:.1f}" in table
    assert read_val_record(record.with_name("absent.json")) == []


def test_quick_pipeline_report_schema(quick_pipeline):
    runs, _report = quick_pipeline
    on_disk = json.loads((runs / "reports" / "quick" / "report.json").read_text())
    assert on_disk["preset"] == "quick" and on_disk["split"] == "test" and on_disk["seeds"] == [0]
    assert set(on_disk["models"]) == {"teacher", "baseline", "feature_imitation", "drkd"}
    for name, entry in on_disk["models"].items():
        for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
            summary = entry["summary"][key]
            assert set(summary) == {"n", "mean", "std", "ci95"} and 0.0 <= summary["mean"] <= 1.0
        assert len(entry["per_class"]) == 8
        if name not in ("teacher", "baseline"):
            assert set(entry["gain_over_baseline"]) >= {"AP", "APs"} and "gap_closed" in entry
    for role in ("teacher", "student"):
        cost = on_disk["costs"][role]
        assert cost["parameters"] > 0 and cost["gflops_per_image"] > 0 and cost["cpu_images_per_s"] > 0
        assert cost["cpu_images_per_s_1thread"] > 0 and cost["threads"] >= 1
    assert on_disk["costs"]["teacher"]["parameters"] > on_disk["costs"]["student"]["parameters"]
    assert on_disk["provenance"]["git"]["commit"] is None or len(on_disk["provenance"]["git"]["commit"]) == 40
    bar = {c["criterion"]: c for c in on_disk["scientific_bar"]}
    # issue 14's bar, then the controlled study's (relation_report.py; the quick preset has no control arms)
    # one seed: the interval lines are left out (four of them: DRKD's gain in AP and AP_S, DRKD − imitation in both)
    assert len(bar) == 11 and all(c["passed"] in (True, False) for c in bar.values())
    assert not [c for c in bar if c.startswith("95 % interval")]
    assert "With one seed there are no intervals" in markdown(on_disk)
    teacher_ap = on_disk["models"]["teacher"]["summary"]["AP"]["mean"]
    assert bar["teacher test AP ≥ 50"] == {
        "criterion": "teacher test AP ≥ 50",
        "measured": f"{teacher_ap * 100:.1f}",
        "passed": teacher_ap >= 0.5,
    }
    drkd_gain = on_disk["models"]["drkd"]["gain_over_baseline"]["AP"]["mean"]
    # the bar pre-registered in issue 14: +1.5 AP, +2.0 AP_S, +0.5 AP over the best imitation, paired intervals
    assert bar["DRKD AP ≥ baseline + 1.5 points"]["passed"] == (drkd_gain >= 0.015)
    drkd_aps_gain = on_disk["models"]["drkd"]["gain_over_baseline"]["APs"]["mean"]
    assert bar["DRKD APs ≥ baseline + 2.0 points"]["passed"] == (drkd_aps_gain >= 0.020)
    over_fi = (
        on_disk["models"]["drkd"]["summary"]["AP"]["mean"]
        - on_disk["models"]["feature_imitation"]["summary"]["AP"]["mean"]
    )
    assert bar["DRKD AP ≥ best imitation (feature_imitation) AP + 1.0 points"]["measured"] == f"{over_fi * 100:+.1f}"
    relations = on_disk["relations"]
    first = relations["levels"][0]
    teacher_auc = relations["auc"]["teacher"][first]["mean"]
    assert bar[f"teacher's instance-relation target: same-class AUC at {first} ≥ 0.75"]["passed"] == (
        teacher_auc >= 0.75
    )
    assert set(relations["agreement"]) == {"baseline", "feature_imitation", "drkd"}
    closer = bar[f"DRKD's relation rows closer to the teacher's than feature imitation's (row L1, {first}), every seed"]
    assert closer["measured"].endswith("of 1 seeds")
    text = (runs / "reports" / "quick" / "report.md").read_text()
    assert "## Accuracy" in text and "## Gains over the baseline" in text and "faster than the teacher" in text
    assert "## Instance relations" in text
    for figure in ("ap_by_size.png", "per_class.png", "speed_vs_ap.png"):
        assert (runs / "reports" / "quick" / figure).stat().st_size > 5000


def test_report_numbers_equal_re_evaluating_the_stored_detections(quick_pipeline):
    runs, report = quick_pipeline
    gt = runs / "data" / "test" / "annotations.json"
    for name, entry in report["models"].items():
        for run, seed in zip(entry["runs"], entry["seeds"], strict=True):
            fresh = evaluate_detections(gt, runs / run / "eval" / "test" / "detections.json", backend="pycocotools")
            stored = entry["per_seed"][str(seed)]
            assert {k: fresh.stats[k] for k in stored} == stored, name
        assert entry["summary"]["AP"]["mean"] == pytest.approx(
            sum(entry["per_seed"][str(s)]["AP"] for s in entry["seeds"]) / len(entry["seeds"])
        )


def test_rerunning_a_finished_pipeline_takes_seconds(quick_pipeline):
    """Nothing is trained or pre-trained again (behaviour, not timing: the files keep their modification times)."""
    runs, report = quick_pipeline
    watched = [*runs.glob("pretrain/*.safetensors"), *runs.glob("*/export/student.safetensors")]
    stamps = {path: path.stat().st_mtime_ns for path in watched}
    again = run_pipeline("quick", runs, quiet=True)
    assert all(info["status"] == "cached" for info in again["provenance"]["runs"].values())
    assert len(stamps) == 6 and all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items())
    assert again["models"]["drkd"]["per_seed"] == report["models"]["drkd"]["per_seed"]


def test_every_detector_starts_from_its_pretrained_backbone(quick_pipeline, tmp_path):
    """The pre-training stage runs once per backbone, on the train split; every run's config names its file,
    and a change of the pre-training makes every run initialised from it stale."""
    from drkd_viz.experiments import pipeline as module

    runs, _ = quick_pipeline
    files = sorted(runs.glob("pretrain/*.safetensors"))
    assert [f.name.split("-")[0] for f in files] == ["resnet10", "resnet18"]
    for file in files:
        record = json.loads(file.with_suffix(".json").read_text())
        assert record["source"]["annotations"].endswith("train/annotations.json")
        assert record["config"]["iterations"] == PRESETS["quick"].pretrain_iterations
    for job in plan(PRESETS["quick"], runs):
        cfg = load_config(job.folder / "config.yaml")
        backbone = "resnet18" if job.kind == "teacher" else "resnet10"
        assert Path(cfg.train.init_weights).name.startswith(backbone) and Path(cfg.train.init_weights) in files
    longer = module.PipelinePreset(**{**PRESETS["quick"].__dict__, "pretrain_iterations": 5})
    assert not {j.key for j in plan(longer, tmp_path)} & {j.key for j in plan(PRESETS["quick"], tmp_path)}


def test_study_lives_beside_the_demo_without_touching_its_runs(tmp_path):
    """The study has its own schedules: its runs go to RUNS/study/ (the data is shared), none of its folders
    is one of the demo's, its teacher is the demo's (the same config, so the same shipped weights), and its
    students train longer and infer with fewer proposals than the demo's."""
    demo, study = plan(PRESETS["demo"], tmp_path), plan(PRESETS["study"], tmp_path)
    assert {j.folder for j in demo}.isdisjoint(j.folder for j in study)
    assert all(j.folder.parent == tmp_path.resolve() / "study" for j in study)
    assert {j.config.data.root for j in demo + study} == {str(tmp_path.resolve() / "data")}
    methods = [j.method for j in study]
    # the comparison and the controls' arms on every seed (the controlled study's bar is paired by seed)
    compared = ("baseline", "drkd", "feature_imitation", "pkd", "relation", "relation_rotate", "fi_rotate")
    assert {methods.count(m) for m in compared} == {len(PRESETS["study"].seeds)} and len(PRESETS["study"].seeds) >= 5
    assert {"pr_only", "ir_only", "ir_no_filter", "ir_reference_filter", "ir_matrix"} <= set(methods)
    assert study[0].key == demo[0].key
    rotated = next(j for j in study if j.method == "fi_rotate").config.distill
    assert rotated.method == "feature_imitation" and rotated.rotate_teacher and rotated.fi_weight > 0
    student = next(j for j in study if j.method == "baseline").config
    assert student.model.rpn_post_nms_top_n_test < demo[0].config.model.rpn_post_nms_top_n_test
    # one thread per student, so a run's result does not depend on how many train beside it
    assert all(j.config.train.threads == 1 for j in study[1:]) and PRESETS["study"].parallel_jobs == 2
    assert student.train.iterations > next(j for j in demo if j.method == "baseline").config.train.iterations


def test_changed_config_moves_the_old_run_aside(quick_pipeline, monkeypatch):
    runs, _ = quick_pipeline
    from drkd_viz.experiments import pipeline as module

    jobs = plan(PRESETS["quick"], runs)
    baseline = next(j for j in jobs if j.method == "baseline")
    changed = module.PipelinePreset(
        **{
            **PRESETS["quick"].__dict__,
            "student": {**PRESETS["quick"].student, "optim": {"lr": 0.01, "warmup_iters": 10}},
        }
    )
    new_jobs = plan(changed, runs)
    new_baseline = next(j for j in new_jobs if j.method == "baseline")
    assert new_baseline.key != baseline.key
    assert module.job_state(new_baseline) == "stale"


def test_a_retrained_teacher_makes_the_students_it_taught_stale(tmp_path):
    from drkd_viz.experiments import pipeline as module

    before = {j.name: j.key for j in plan(PRESETS["quick"], tmp_path)}
    quick = PRESETS["quick"]
    longer = module.PipelinePreset(
        **{**quick.__dict__, "teacher": {**quick.teacher, "train": {**quick.teacher["train"], "iterations": 61}}}
    )
    after = {j.name: j.key for j in plan(longer, tmp_path)}
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"teacher", "feature_imitation-s0", "drkd-s0"}  # the baseline never saw the teacher


def test_students_trained_in_parallel_equal_those_trained_one_after_another(quick_pipeline, tmp_path):
    """Each student runs in its own process with its config's threads: two at a time gives the very same
    weights and test metrics as the fixture's sequential build (teacher and data reused from it)."""
    runs, report = quick_pipeline
    copy = tmp_path / "runs"
    for part in ("data", "teacher"):
        shutil.copytree(runs / part, copy / part)
    again = run_pipeline("quick", copy, quiet=True, jobs=2)
    statuses = {name: info["status"] for name, info in again["provenance"]["runs"].items()}
    assert statuses == {
        "teacher": "cached",
        "baseline-s0": "trained",
        "feature_imitation-s0": "trained",
        "drkd-s0": "trained",
    }
    for name in ("baseline", "feature_imitation", "drkd"):
        assert again["models"][name]["per_seed"] == report["models"][name]["per_seed"], name
        for run in again["models"][name]["runs"]:
            original = json.loads((runs / run / "manifest.json").read_text())["replica_checksums"]
            assert json.loads((copy / run / "manifest.json").read_text())["replica_checksums"] == original
    with pytest.raises(UserError, match="jobs must be at least 1"):
        run_pipeline("quick", copy, quiet=True, jobs=0)


def test_coco_paper_configs_dry_run_on_real_coco(mini_coco, tmp_path):
    """The paper's configs, pointed at the 55 real val2017 photos in tests/data/coco_mini at a tiny image
    size: a teacher and a DRKD student train two iterations each and are evaluated."""
    from drkd_viz.engine.trainer import train

    data = [
        f"data.{split}_{kind}={mini_coco / ('images' if kind == 'images' else 'annotations.json')}"
        for split in ("train", "val", "test")
        for kind in ("images", "annotations")
    ]
    tiny = [
        "model.min_size=96",
        "model.max_size=128",
        "model.rpn_pre_nms_top_n_train=200",
        "model.rpn_post_nms_top_n_train=100",
        "model.rpn_pre_nms_top_n_test=100",
        "model.rpn_post_nms_top_n_test=50",
        "model.box_batch_size_per_image=64",
        "model.topk_candidates=100",
        "train.iterations=2",
        "train.batch_size=2",
        "train.checkpoint_every=2",
        "train.init_weights=null",
        "data.workers=0",
        "data.max_eval_images=8",
        "train.eval_batch_size=4",
        "optim.amp=false",
    ]
    for family in ("faster_rcnn", "retinanet"):
        teacher = tmp_path / f"teacher_{family}"
        cfg = load_config(REPO / "configs" / "coco-paper" / f"teacher_{family}.yaml", overrides=data + tiny)
        assert cfg.model.backbone == "resnet101" and cfg.train.batch_size == 2
        manifest = train(cfg, teacher, quiet=True)
        assert manifest["status"] == "finished" and manifest["metrics"]["val"]["AP"] >= 0
        student = load_config(
            REPO / "configs" / "coco-paper" / f"drkd_{family}.yaml",
            overrides=[*data, *tiny, f"distill.teacher={teacher}"],
        )
        assert student.distill.preset == "reference" and student.distill.pr_weight == 1e-3
        manifest = train(student, tmp_path / f"drkd_{family}", quiet=True)
        assert manifest["status"] == "finished" and manifest["world_size"] == 1
        assert json.loads((tmp_path / f"drkd_{family}" / "eval" / "val" / "metrics.json").read_text())["per_class"]
        for folder in (teacher, tmp_path / f"drkd_{family}"):  # ~0.8 GB of R101/R50 checkpoints each
            shutil.rmtree(folder)
