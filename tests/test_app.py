"""The dashboard in-process (streamlit.testing AppTest): every page renders on the quick runs, its main
widgets change without an exception, and the expected elements are there; plus the non-UI side
(drkd_viz.runs, drkd_viz.serving, drkd_viz.experiments.builds): paths confined to the runs folder, upload
limits, reports, build progress."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import add_a_study
from PIL import Image
from typer.testing import CliRunner

from drkd_viz.cli import app as cli_app
from drkd_viz.data.images import UPLOAD_MAX_BYTES, UPLOAD_MAX_MB, UPLOAD_MAX_SIDE, decode_upload
from drkd_viz.errors import DatasetError, UserError
from drkd_viz.experiments.builds import build_progress, conflicting_runs, current_build
from drkd_viz.runs import RUNS_ENV, inside, run_folders, runs_root
from drkd_viz.runs.reports import check_report, default_report, leaderboard, list_reports, read_report, replaced_runs
from drkd_viz.serving import APP_ENTRY, check_entry, streamlit_command

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app" / "Home.py")
TIMEOUT = 180  # a cold page loads three detectors and computes maps on a shared 2-core CPU


@pytest.fixture(autouse=True)
def _restore_main_module():
    """AppTest runs the app as ``__main__`` and leaves it there (with app/ on sys.path); later spawned worker
    processes (the dataset generator's pool) would then re-import app/Home.py and die. Put both back."""
    main, path = sys.modules.get("__main__"), list(sys.path)
    yield
    if main is not None:
        sys.modules["__main__"] = main
    sys.path[:] = path


def _app(monkeypatch, runs: Path):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(RUNS_ENV, str(runs))
    st.cache_data.clear()  # process-global; models (cache_resource) are keyed by runs folder and kept
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def _ok(at) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    parts += [w.value for w in at.warning] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts)


def _images(at) -> int:
    return len(at.get("image"))


def _charts(at) -> list:
    """The interactive (Vega-Lite) charts on the page."""
    return at.get("vega_lite_chart")


@pytest.fixture
def app(monkeypatch, quick_runs):
    at = _app(monkeypatch, quick_runs).run()
    _ok(at)
    return at


# ---------------------------------------------------------------- pages
def test_overview_leaderboard_and_chart(app):
    assert app.title[0].value == "Overview"
    assert len(app.dataframe) == 1
    board = app.dataframe[0].value
    assert {"teacher", "baseline", "feature_imitation", "drkd"} <= set(board["model"])
    assert {"AP", "APs", "APm", "APl", "ΔAP", "gap closed AP (%)", "CPU images / s"} <= set(board.columns)
    assert "quick" in _texts(app) and "commit" in _texts(app)
    assert _images(app) == 1
    app.selectbox(key="overview_metric").select("ΔAPs").run()
    _ok(app)
    app.toggle(key="overview_intervals").set_value(True).run()
    _ok(app)
    assert "AP CI low" in app.dataframe[0].value.columns
    app.multiselect(key="overview_models").set_value(["baseline", "drkd"]).run()
    _ok(app)
    assert list(app.dataframe[0].value["model"]) == ["baseline", "drkd"]
    assert [b.label for b in app.get("download_button")] == ["Download CSV", "Download PNG"]


def test_sidebar_picks_the_report(app):
    picker = app.sidebar.selectbox(key="report")
    assert picker.value == "quick" and len(picker.options) == 1
    assert "Runs folder" in app.sidebar.caption[0].value


def test_runs_page_training_curves(app):
    app.switch_page("views/runs.py").run()
    _ok(app)
    assert app.title[0].value == "Runs"
    assert len(app.get("vega_lite_chart")) == 1  # the training curves, interactive
    assert _images(app) == 1  # the diagnostics of a distillation run
    assert set(app.multiselect(key="runs_chosen").value) == {"baseline-s0", "feature_imitation-s0", "drkd-s0"}
    # the baseline logs no diagnostics: only the distillation runs are offered
    # the baseline logs ‖∇L_det‖ and its clip factor too: the reference a distilled run is read against
    assert set(app.selectbox(key="runs_diagnosed").options) == {"baseline-s0", "feature_imitation-s0", "drkd-s0"}
    app.selectbox(key="runs_diagnosed").select("drkd-s0").run()
    _ok(app)
    assert "How to read the diagnostics" in _texts(app)
    app.multiselect(key="runs_terms").set_value(["loss", "loss_pr", "pr_P2"]).run()
    _ok(app)
    app.slider(key="runs_smooth").set_value(10).run()
    app.toggle(key="runs_log").set_value(True).run()
    app.toggle(key="runs_ratio").set_value(True).run()
    _ok(app)
    assert _images(app) == 1
    spec = json.loads(app.get("vega_lite_chart")[0].proto.spec)
    assert spec["title"]["text"] if isinstance(spec["title"], dict) else spec["title"]  # a titled chart
    assert "÷ detection loss" in json.dumps(spec, ensure_ascii=False) and '"log"' in json.dumps(spec)
    runs_table = app.dataframe[0].value
    assert set(runs_table["run"]) == {"teacher", "baseline-s0", "feature_imitation-s0", "drkd-s0"}


def test_ablations_page_without_study_says_so(app):
    app.switch_page("views/ablations.py").run()
    _ok(app)
    assert "no `study` report" in _texts(app)
    app.selectbox(key="ablations_metric").select("AP").run()
    _ok(app)
    app.text_input(key="ablations_filter").input("drkd").run()
    _ok(app)
    assert list(app.dataframe[0].value["model"]) == ["drkd"]
    app.text_input(key="ablations_filter").input("no such model").run()
    _ok(app)
    assert "No model matches" in _texts(app)


def test_ablations_page_shows_the_study_report(monkeypatch, quick_runs, tmp_path):
    """A runs folder with a `study` report: the page shows it whatever report the sidebar picked, with the
    ablations' settings. (The study report is the quick one relabelled: its numbers are the quick runs'.)"""
    runs = tmp_path / "runs"
    (runs / "reports" / "study").mkdir(parents=True)
    report = json.loads((quick_runs / "reports" / "quick" / "report.json").read_text())
    report["preset"] = "study"
    report["models"]["ir_only"] = report["models"]["drkd"]
    (runs / "reports" / "study" / "report.json").write_text(json.dumps(report))
    shutil.copytree(quick_runs / "reports" / "quick", runs / "reports" / "quick")
    at = _app(monkeypatch, runs).run()
    _ok(at)
    at.switch_page("views/ablations.py").run()
    _ok(at)
    table = at.dataframe[0].value
    assert "ir_only" in set(table["model"])
    assert table.set_index("model").loc["ir_only", "setting"] == "the paper's terms instead of DRKD's, pr_weight = 0.0"
    at.multiselect(key="ablations_kinds").set_value(["ablation"]).run()
    _ok(at)
    assert list(at.dataframe[0].value["model"]) == ["ir_only"]
    assert _images(at) == 2  # the chosen metric, the AP / AP_S gains
    assert "none of the controlled study's arms" in _texts(at)


def test_ablations_page_draws_the_controls(monkeypatch, quick_runs, tmp_path):
    """A report with the controlled study's arms: the lesson chart and the sentence that reads it. (The arms are the
    quick runs' entries relabelled: the chart's numbers are theirs.)"""
    runs = tmp_path / "runs"
    (runs / "reports" / "study").mkdir(parents=True)
    report = json.loads((quick_runs / "reports" / "quick" / "report.json").read_text())
    report["preset"] = "study"
    for arm, source in (("relation", "drkd"), ("relation_rotate", "drkd"), ("fi_rotate", "feature_imitation")):
        report["models"][arm] = report["models"][source]
    (runs / "reports" / "study" / "report.json").write_text(json.dumps(report))
    shutil.copytree(quick_runs / "reports" / "quick", runs / "reports" / "quick")
    at = _app(monkeypatch, runs).run()
    at.switch_page("views/ablations.py").run()
    _ok(at)
    assert len(_charts(at)) == 1
    gain = report["models"]["drkd"]["gain_over_baseline"]["AP"]["mean"] * 100
    assert f"Relations alone gain {gain:+.1f} AP over the baseline" in _texts(at)
    at.radio(key="ablations_controls_metric").set_value("APs").run()
    _ok(at)


def test_small_objects_page(app):
    app.switch_page("views/small_objects.py").run()
    _ok(app)
    assert app.title[0].value == "Small objects"
    assert len(app.get("vega_lite_chart")) == 2  # AP by size and the PR curves, interactive
    assert _images(app) >= 2  # per-class gains, found / missed gallery
    app.selectbox(key="small_area").select("medium").run()
    _ok(app)
    app.selectbox(key="small_iou").select("IoU 0.50 (AP50)").run()
    app.selectbox(key="small_method").select("feature_imitation").run()
    _ok(app)
    app.slider(key="small_threshold").set_value(0.05).run()  # the quick models' scores are low
    app.selectbox(key="small_gallery_size").select("all").run()
    app.selectbox(key="small_gallery_method").select("feature_imitation").run()
    _ok(app)
    text = _texts(app)
    assert "found by `feature_imitation` and missed by the baseline" in text
    assert "found by the baseline and missed by `feature_imitation`" in text  # the reverse is shown too
    has_objects = "small_image" in [w.key for w in app.selectbox]  # the one-image view needs an object
    assert _images(app) == (3 if has_objects else 2)


def test_errors_page(app):
    app.switch_page("views/errors.py").run()
    _ok(app)
    assert app.title[0].value == "Errors"
    charts = app.get("vega_lite_chart")
    assert len(charts) == 3  # the breakdown, the differences to the baseline, the confusion matrix
    text = _texts(app)
    assert re.search(r"\*\*drkd\*\* (recovers|loses) \*\*\d+\.\d\d\*\* AP50 points of missed small objects", text), text
    breakdown = app.dataframe[0].value
    assert {"model", "classification", "missed", "all false positives"} <= set(breakdown.columns)
    assert set(breakdown["model"]) == {"teacher", "baseline", "feature_imitation", "drkd"}
    app.radio(key="errors_size").set_value("all").run()
    _ok(app)
    assert app.dataframe[0].value.equals(breakdown) is False  # another size, other numbers
    app.slider(key="errors_threshold").set_value(0.05).run()  # the quick models' scores are low
    app.toggle(key="errors_cm_diff").set_value(True).run()
    _ok(app)
    assert "− baseline" in json.dumps(json.loads(app.get("vega_lite_chart")[2].proto.spec), ensure_ascii=False)
    app.selectbox(key="errors_student").select("feature_imitation").run()
    _ok(app)
    assert "`feature_imitation` does better than the baseline on" in _texts(app)
    assert _images(app) == 2  # the images where the student does better, and worse


def test_pixel_relations_page(app):
    app.switch_page("views/pixel_relations.py").run()
    _ok(app)
    assert app.title[0].value == "Pixel relations"
    assert _images(app) == 2  # maps side by side, graph view
    assert len(_charts(app)) == 2  # the pixel picker, the affinity maps
    assert app.session_state["affinity_cell"] is not None
    app.selectbox(key="affinity_level").select("P4").run()
    app.select_slider(key="affinity_cells").set_value(12).run()
    _ok(app)
    assert "of 12 ×" in _texts(app) or "× 12;" in _texts(app)
    contrast = app.dataframe[0].value
    assert list(contrast["model"]) == ["teacher", "baseline student", "DRKD student"]
    app.slider(key="pixel_opacity").set_value(0.8).run()
    app.selectbox(key="pixel_level").select(app.selectbox(key="pixel_level").options[1]).run()
    _ok(app)
    app.selectbox(key="pixel_index").select(app.selectbox(key="pixel_index").options[2]).run()
    app.multiselect(key="pixel_roles").set_value(["teacher", "drkd"]).run()
    _ok(app)
    app.selectbox(key="pixel_graph_role").select("drkd").run()
    app.slider(key="pixel_node").set_value(3).run()
    _ok(app)
    app.slider(key="pixel_summary_images").set_value(5).run()
    app.toggle(key="pixel_summary").set_value(True).run()
    _ok(app)
    assert _images(app) == 3
    summary = app.dataframe[-1].value
    assert set(summary["role"]) == {"teacher", "drkd"} and summary["index"].nunique() == 5


def test_pixel_relations_upload(app):
    app.switch_page("views/pixel_relations.py").run()
    app.radio(key="pixel_source").set_value("upload").run()
    _ok(app)
    assert "Upload an image" in _texts(app)
    assert app.get("file_uploader")  # the widget is there (AppTest cannot send a file: tested below)


def test_instance_relations_page(app):
    app.switch_page("views/instance_relations.py").run()
    _ok(app)
    assert app.title[0].value == "Instance relations"
    assert _images(app) == 1  # the image with its numbered instances (the matrices are an interactive chart)
    assert len(_charts(app)) == 3  # the matrices; the report's AUC and agreement
    assert app.radio(key="instance_relation").value == "anchored"  # the anchored target by default
    pick = app.selectbox(key="instance_pick")
    assert pick.value == 0 and pick.options[0] == "none"
    app.selectbox(key="instance_pick").select(None).run()
    _ok(app)
    app.selectbox(key="instance_pick").set_value(2).run()
    _ok(app)
    tables = [frame.value for frame in app.dataframe]
    per_image = next(t for t in tables if "auc" in t.columns)
    assert list(per_image["model"]) == ["teacher", "baseline student", "DRKD student"]
    assert all(v == "—" or 0 <= float(v) <= 1 for v in per_image["auc"])
    row = next(t for t in tables if "#0" in t.columns)
    assert list(row["model"]) == ["teacher", "baseline student", "DRKD student"]
    assert row.drop(columns="model").sum(axis=1).tolist() == pytest.approx([1, 1, 1], abs=0.01)  # rows of A sum to 1
    # the learned relation (the quick runs train the paper's terms): another matrix, the caption that reads it
    app.radio(key="instance_relation").set_value("learned").run()
    _ok(app)
    assert "entropy" in _texts(app)
    learned = next(t.value for t in app.dataframe if "#0" in t.value.columns)
    assert not learned.drop(columns="model").equals(row.drop(columns="model"))
    app.selectbox(key="instance_level").select(app.selectbox(key="instance_level").options[-1]).run()
    app.selectbox(key="instance_index").select(app.selectbox(key="instance_index").options[3]).run()
    _ok(app)
    app.slider(key="instance_summary_images").set_value(5).run()
    app.toggle(key="instance_summary").set_value(True).run()
    _ok(app)
    assert _images(app) == 2
    tables = [frame.value for frame in app.dataframe]
    by_size = next(t for t in tables if "l1 mean" in t.columns)
    assert {"role", "size", "l1 mean", "kl mean"} <= set(by_size.columns)
    # the report's relation metrics: an AUC for every model, the teacher's agreement with itself left empty
    carried = next(t for t in tables if "AUC P2" in t.columns)
    assert list(carried["model"]) == ["teacher", "baseline", "feature_imitation", "drkd"]
    # (an empty cell reads "—", never "None")
    assert carried["AUC P2"].between(0, 1).all() and carried.set_index("model")["row L1 all (P2)"]["teacher"] == "—"


def test_attribution_page(app):
    app.switch_page("views/attribution.py").run()
    _ok(app)
    assert app.title[0].value == "Attribution"
    assert _images(app) == 1
    app.radio(key="attr_box_from").set_value("a ground-truth object").run()
    _ok(app)
    app.selectbox(key="attr_box").select(1).run()
    app.selectbox(key="attr_zoom").select("whole image").run()
    app.slider(key="attr_opacity").set_value(0.3).run()
    _ok(app)
    app.multiselect(key="attr_methods").set_value(["integrated_gradients", "gradcam"]).run()
    app.select_slider(key="attr_steps").set_value(8).run()
    _ok(app)
    # Grad-CAM starts on the level the detector reads the box from (any other level of Faster R-CNN is all zero)
    assert app.selectbox(key="attr_level").value == "auto"
    app.selectbox(key="attr_level").set_value("P3").run()
    _ok(app)
    scores = app.dataframe[0].value
    assert {"IG sum", "score − score(black)"} <= set(scores.columns) and len(scores) == 3
    assert _images(app) == 1


def test_model_pages_load_the_runs_of_the_chosen_report_and_seed(monkeypatch, quick_runs, tmp_path):
    """With a study report picked, every page that loads models takes the study's runs of the chosen seed
    (RUNS/study/<role>-s<seed>), not the top-level runs of the same name, and says which folders it shows."""
    runs = tmp_path / "runs"
    add_a_study(quick_runs, runs)
    at = _app(monkeypatch, runs).run()
    at.sidebar.selectbox(key="report").select("study").run()
    _ok(at)
    at.sidebar.selectbox(key="seed").select(2).run()
    _ok(at)
    for page in ("pixel_relations", "instance_relations", "attribution", "small_objects", "errors"):
        at.switch_page(f"views/{page}.py").run()
        _ok(at)
        text = _texts(at)
        if page not in ("small_objects", "errors"):
            assert "Models of report `study`, seed 2" in text, page
            assert "drkd `study/drkd-s2`" in text and "teacher `study/teacher`" in text, page
            assert "`drkd-s0`" not in text
        assert _images(at) >= 1, page


def test_a_report_from_runs_in_two_folders_opens_every_page(monkeypatch, quick_runs, tmp_path):
    """`drkd-viz report` on runs kept in two folders, one of them not yet evaluated on test: the report has the
    pipeline's format, its numbers are the runs' own, and every page shows it, the model pages on its runs."""
    runs = tmp_path / "runs"
    shutil.copytree(quick_runs / "data", runs / "data")
    placed = {
        "teacher": "mine/teacher",
        "baseline-s0": "mine/baseline",
        "drkd-s0": "elsewhere/drkd",
        "feature_imitation-s0": "elsewhere/imitation",
    }
    for source, dest in placed.items():
        shutil.copytree(quick_runs / source, runs / dest, ignore=shutil.ignore_patterns("tensorboard"))
        config = runs / dest / "config.yaml"  # the data moved with the runs
        moved = config.read_text().replace(str(quick_runs.resolve() / "data"), str((runs / "data").resolve()))
        config.write_text(moved)
    shutil.rmtree(runs / "elsewhere" / "drkd" / "eval")
    args = ["report", "--teacher", str(runs / "mine" / "teacher"), "--baseline", str(runs / "mine" / "baseline")]
    args += ["--student", f"drkd={runs / 'elsewhere' / 'drkd'}"]
    args += ["--student", f"feature_imitation={runs / 'elsewhere' / 'imitation'}"]
    result = CliRunner().invoke(cli_app, [*args, "--out", str(runs / "reports" / "mine"), "--no-timing", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "drkd-viz app --runs" in result.output
    report = json.loads((runs / "reports" / "mine" / "report.json").read_text())
    assert report["models"]["drkd"]["runs"] == ["elsewhere/drkd"] and report["data"]["annotations"].startswith("data/")
    stored = json.loads((quick_runs / "drkd-s0" / "eval" / "test" / "metrics.json").read_text())
    assert report["models"]["drkd"]["per_seed"]["0"]["AP"] == pytest.approx(stored["AP"], abs=1e-3)  # evaluated again

    at = _app(monkeypatch, runs).run()
    _ok(at)
    assert at.sidebar.selectbox(key="report").value == "mine"
    assert set(at.dataframe[0].value["model"]) == {"teacher", "baseline", "feature_imitation", "drkd"}
    pages = ("runs", "ablations", "small_objects", "errors", "pixel_relations", "instance_relations", "attribution")
    for page in pages:
        at.switch_page(f"views/{page}.py").run()
        _ok(at)
        if page in ("pixel_relations", "instance_relations", "attribution"):
            assert "drkd `elsewhere/drkd`" in _texts(at) and "teacher `mine/teacher`" in _texts(at), page
        assert _images(at) >= 1, page


def test_a_report_from_runs_refuses_what_it_cannot_compare(quick_runs, tmp_path):
    from drkd_viz.experiments.from_runs import parse_student, report_from_runs

    runs = tmp_path / "runs"
    for name in ("teacher", "baseline-s0", "drkd-s0"):
        shutil.copytree(quick_runs / name, runs / name, ignore=shutil.ignore_patterns("tensorboard"))
    teacher, baseline, drkd = runs / "teacher", runs / "baseline-s0", runs / "drkd-s0"
    out = runs / "reports" / "never"
    with pytest.raises(UserError, match="must be RUNS/reports/NAME"):
        report_from_runs(teacher, [baseline], [], runs / "mine")
    with pytest.raises(UserError, match="lies outside the runs folder"):
        report_from_runs(quick_runs / "teacher", [baseline], [], out)
    with pytest.raises(UserError, match="cannot be named 'baseline'"):
        report_from_runs(teacher, [baseline], [("baseline", drkd)], out)
    with pytest.raises(UserError, match="letters, digits and underscores"):
        report_from_runs(teacher, [baseline], [("../x", drkd)], out)
    with pytest.raises(UserError, match="two runs of seed 0"):
        report_from_runs(teacher, [baseline], [("drkd", drkd), ("drkd", drkd)], out)
    with pytest.raises(UserError, match="not a run folder"):
        report_from_runs(teacher, [baseline], [("drkd", runs)], out)
    with pytest.raises(UserError, match="NAME=RUN"):
        parse_student("runs/drkd-s0")
    config = drkd / "config.yaml"
    original = config.read_text()
    config.write_text(re.sub(r"(?m)^seed: 0$", "seed: 5", original))
    with pytest.raises(UserError, match="give a baseline run of seed 5"):
        report_from_runs(teacher, [baseline], [("drkd", drkd)], out)
    config.write_text(re.sub(r"(?m)^(\s+)max_size: (\d+)$", r"\1max_size: 1\2", original))
    with pytest.raises(UserError, match="one family and input size"):
        report_from_runs(teacher, [baseline], [("drkd", drkd)], out)
    assert not out.exists()


def test_a_missing_run_is_a_clear_message(monkeypatch, quick_runs, tmp_path):
    """A report whose DRKD run folder is gone: the pages that need it say which run and how to build it."""
    runs = tmp_path / "runs"
    shutil.copytree(quick_runs, runs, ignore=shutil.ignore_patterns("drkd-s0", "checkpoints", "tensorboard"))
    at = _app(monkeypatch, runs).run()
    _ok(at)
    assert any("drkd-s0" in w.value for w in at.sidebar.warning)  # the report's runs no longer match the disk
    at.switch_page("views/pixel_relations.py").run()
    assert not at.exception
    assert "drkd-s0" in at.error[0].value and "drkd-viz pipeline" in at.error[0].value


def test_no_runs_offers_to_build(monkeypatch, tmp_path):
    at = _app(monkeypatch, tmp_path / "empty").run()
    _ok(at)
    assert at.title[0].value == "Build runs"
    assert "no runs to show" in _texts(at).lower()
    assert [b.label for b in at.button] == ["Build quick", "Build demo"]
    assert not (tmp_path / "empty").exists()  # looking does not create anything


def test_build_from_the_app_shows_progress_then_the_overview(monkeypatch, quick_runs, tmp_path):
    """Click 'Build quick' on a runs folder whose runs are done but whose report is missing: the real
    pipeline runs in a child process (cached runs, so only the report is written), the page shows its
    progress, and the app turns to the Overview when it ends."""
    runs = tmp_path / "runs"
    shutil.copytree(quick_runs, runs, ignore=shutil.ignore_patterns("reports", "checkpoints", "tensorboard"))
    at = _app(monkeypatch, runs).run()
    _ok(at)
    at.button(key="build_quick").click().run()
    _ok(at)
    assert len(at.get("progress")) == 1
    build = current_build(runs)
    assert build is not None
    deadline = time.time() + 300
    while build.returncode() is None and time.time() < deadline:
        time.sleep(1)
    assert build.returncode() == 0, build.log_tail()
    at.run()
    at.run()  # the fragment notices the end and reruns the app
    _ok(at)
    assert at.title[0].value == "Overview"
    assert build_progress(runs, "quick").fraction == 1.0


# ---------------------------------------------------------------- the non-UI side
def test_paths_stay_inside_the_runs_folder(tmp_path):
    root = tmp_path / "runs"
    (root / "a").mkdir(parents=True)
    assert inside(root, "a") == (root / "a").resolve()
    for escape in ("..", "../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(UserError, match="only reads inside"):
            inside(root, escape)
    (root / "link").symlink_to(tmp_path)  # a link out of the folder is refused too
    with pytest.raises(UserError):
        inside(root, "link", "secret")
    (tmp_path / "outside" / "reports" / "x").mkdir(parents=True)
    (tmp_path / "outside" / "reports" / "x" / "report.json").write_text('{"created": "2026"}')
    (root / "reports").mkdir()
    (root / "reports" / "evil").symlink_to(tmp_path / "outside" / "reports" / "x")
    assert list_reports(root) == []


def test_a_report_cannot_point_outside(quick_runs, tmp_path):
    report = read_report(quick_runs, "quick")
    for bad in ({"../x": report["models"]["drkd"]}, {"drkd": {**report["models"]["drkd"], "runs": ["../../etc"]}}):
        with pytest.raises(UserError):
            check_report(quick_runs, {**report, "models": bad})


def test_run_folders_include_a_preset_subfolder_and_stay_inside(tmp_path):
    """Top-level runs and the runs of a preset kept in a subfolder (``study/…``) are listed; data, reports,
    hidden folders and links out of the runs folder are not."""
    root = tmp_path / "runs"
    for name in ("teacher", "baseline-s0", "study/teacher", "study/drkd-s1", "reports/x", ".stale/old", "data/y"):
        (root / name).mkdir(parents=True)
        (root / name / "metrics.jsonl").write_text("")
    (tmp_path / "elsewhere" / "run").mkdir(parents=True)
    (tmp_path / "elsewhere" / "run" / "metrics.jsonl").write_text("")
    (root / "link").symlink_to(tmp_path / "elsewhere")
    names = [p.relative_to(root.resolve()).as_posix() for p in run_folders(root)]
    assert names == ["baseline-s0", "study/drkd-s1", "study/teacher", "teacher"]


def test_reports_default_to_demo_else_the_newest(tmp_path):
    for name, mtime in (("quick", 300), ("demo", 100), ("study", 200)):
        path = tmp_path / "reports" / name / "report.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"created": name}))
        os.utime(path, (mtime, mtime))
    reports = list_reports(tmp_path)
    assert [r.preset for r in reports] == ["quick", "study", "demo"]
    assert default_report(reports) == "demo"
    assert default_report(reports[:2]) == "quick"
    assert default_report([]) is None
    with pytest.raises(UserError, match="no report for preset 'nope'"):
        read_report(tmp_path, "nope")


def test_runs_root_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv(RUNS_ENV, str(tmp_path))
    assert runs_root() == tmp_path.resolve()
    assert runs_root(argv=["--runs", str(tmp_path / "x")]) == (tmp_path / "x").resolve()
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is a file"):
        runs_root(tmp_path / "file")


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), (255, 0, 0, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_uploads_are_limited_and_validated():
    image = decode_upload(_png(40, 30), "a.png")
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    big = decode_upload(_png(1600, 400), "wide.png")
    assert big.shape == (3, 200, UPLOAD_MAX_SIDE)
    with pytest.raises(DatasetError, match="megapixels"):
        decode_upload(_png(2100, 2000), "huge.png")  # 4.2 MP, refused from the header
    with pytest.raises(DatasetError, match="at most"):
        decode_upload(b"0" * (UPLOAD_MAX_BYTES + 1), "big.bin")
    with pytest.raises(DatasetError, match="cannot read"):
        decode_upload(b"not an image at all", "x.png")
    with pytest.raises(DatasetError, match="empty"):
        decode_upload(b"", "x.png")


def test_streamlit_command_is_safe_by_default():
    command = streamlit_command()
    flags = dict(zip(command[5::2], command[6::2], strict=True))
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4] == str(APP_ENTRY)
    assert flags["--server.address"] == "127.0.0.1"
    assert flags["--server.fileWatcherType"] == "none"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.maxUploadSize"] == str(UPLOAD_MAX_MB)
    assert check_entry() == APP_ENTRY
    with pytest.raises(UserError, match="entry file"):
        check_entry(Path("/nonexistent/Home.py"))


def test_cli_app_help():
    result = CliRunner().invoke(cli_app, ["app", "--help"])
    assert result.exit_code == 0 and "--runs" in result.output and "--host" in result.output


def test_build_progress_reads_the_run_folders(quick_runs, tmp_path):
    done = build_progress(quick_runs, "quick")
    assert done.fraction == 1.0 and done.stage == "done" and all(j.state == "finished" for j in done.jobs)
    empty = build_progress(tmp_path, "quick")
    assert empty.fraction == 0.0 and empty.stage == "generating the embedded dataset"
    # a half-trained teacher: the stage names it and the fraction is strictly between
    runs = tmp_path / "partial"
    shutil.copytree(quick_runs / "data", runs / "data")
    (runs / "teacher").mkdir()
    shutil.copy(quick_runs / "teacher" / "pipeline.json", runs / "teacher")
    lines = (quick_runs / "teacher" / "metrics.jsonl").read_text().splitlines()
    (runs / "teacher" / "metrics.jsonl").write_text("\n".join(lines[:10]) + "\n")
    partial = build_progress(runs, "quick")
    assert partial.stage == f"training teacher: iteration 10 of {partial.jobs[0].iterations}"
    assert 0 < partial.fraction < 1
    assert conflicting_runs(runs, "quick") == []
    (runs / "teacher" / "pipeline.json").write_text('{"config_key": "another"}')
    assert conflicting_runs(runs, "quick") == ["teacher"]


def test_leaderboard_and_replaced_runs(quick_runs, tmp_path):
    report = read_report(quick_runs, "quick")
    board = leaderboard(report)
    assert list(board["model"]) == list(report["models"])
    teacher = board.set_index("model").loc["teacher"]
    assert teacher["AP"] == pytest.approx(report["models"]["teacher"]["summary"]["AP"]["mean"] * 100)
    assert replaced_runs(quick_runs, report) == []
    runs = tmp_path / "runs"
    shutil.copytree(quick_runs, runs, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "data"))
    (runs / "drkd-s0" / "pipeline.json").write_text('{"config_key": "another"}')
    assert replaced_runs(runs, report) == ["drkd-s0"]


def test_a_report_reads_from_a_relative_runs_folder(quick_runs, monkeypatch):
    monkeypatch.chdir(quick_runs.parent)
    assert [r.preset for r in list_reports(Path(quick_runs.name))] == ["quick"]
    assert read_report(quick_runs.name, "quick")["preset"] == "quick"
    assert read_report(Path(quick_runs.name))["preset"] == "quick"
    from drkd_viz.runs import report_split_files

    report = read_report(quick_runs.name, "quick")
    assert report_split_files(quick_runs.name, report)[1] == (quick_runs / "data" / "test" / "annotations.json")
