"""Weights shipped inside the package: the manifest is honest (sha256, size, fp16, the key the demo pipeline
asks for) and re-evaluating each model on a fixed subset of the test split gives the recorded metrics."""

from __future__ import annotations

from dataclasses import replace

import pytest
from safetensors import safe_open

from drkd_viz.data.embedded import generate_dataset
from drkd_viz.data.synthetic import GENERATOR_VERSION, PRESETS
from drkd_viz.experiments.shipped import check_metrics
from drkd_viz.shipped import MAX_SHIPPED_BYTES, SHIPPED_DIR, sha256_of, shipped_models

MODELS = shipped_models()


def test_shipped_files_are_listed_hashed_and_small():
    assert MODELS, f"no shipped model listed in {SHIPPED_DIR / 'manifest.json'}"
    assert sum(m.path().stat().st_size for m in MODELS) <= MAX_SHIPPED_BYTES
    listed = {m.file for m in MODELS}
    assert {p.name for p in SHIPPED_DIR.glob("*.safetensors")} == listed  # nothing shipped without an entry
    for model in MODELS:
        assert sha256_of(model.path()) == model.sha256 and model.path().stat().st_size == model.bytes
        with safe_open(str(model.path()), "pt") as fh:
            assert {str(fh.get_tensor(k).dtype) for k in fh.keys()} <= {"torch.float16", "torch.int64"}  # noqa: SIM118
        assert model.command and model.generator_version == GENERATOR_VERSION


def test_the_demo_pipeline_uses_the_shipped_teacher(tmp_path):
    from drkd_viz.experiments.pipeline import PRESETS as PIPELINES
    from drkd_viz.experiments.pipeline import plan

    teacher = plan(PIPELINES["demo"], tmp_path)[0]
    shipped = next((m for m in MODELS if m.config_key == teacher.key), None)
    assert shipped is not None, "the demo teacher's config changed: reship it (see drkd_viz/experiments/shipped.py)"
    assert shipped.student_json["detector"]["backbone"] == teacher.config.model.backbone


@pytest.mark.parametrize("model", MODELS, ids=[m.name for m in MODELS])
def test_a_shipped_model_reproduces_its_recorded_metrics(model, tmp_path):
    # the first N test images of the demo dataset depend only on (seed, split, index): draw just those
    subset = replace(
        PRESETS["demo"], name="shipped-check", split_sizes={"train": 1, "val": 1, "test": model.check["images"]}
    )
    generate_dataset(tmp_path / "data", preset=subset, seed=0, progress=False)
    measured = check_metrics(model, tmp_path / "data")
    for key, recorded in model.check["metrics"].items():
        assert measured[key] == pytest.approx(recorded, abs=2e-3), (key, measured, model.check["metrics"])
