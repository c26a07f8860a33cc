from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# real COCO val2017 photos kept in the repository (see its SOURCE.md); nothing outside the repository is read
MINI_COCO = REPO / "tests" / "data" / "coco_mini"


@pytest.fixture(scope="session")
def quick_data(tmp_path_factory) -> Path:
    """The embedded dataset's quick preset, generated once per test session."""
    from drkd_viz.data.embedded import generate_dataset

    root = tmp_path_factory.mktemp("data") / "quick"
    generate_dataset(root, preset="quick", seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def mini_coco() -> Path:
    if not (MINI_COCO / "annotations.json").is_file():
        pytest.fail(
            f"the real mini COCO set is missing at {MINI_COCO}: it is part of the repository, restore it with git"
        )
    return MINI_COCO


@pytest.fixture(scope="session")
def quick_runs(tmp_path_factory) -> Path:
    """The ``quick`` experiments pipeline (data, teacher, baseline / feature-imitation / DRKD students,
    report), built once per test session (~45 s). Tests must not modify it."""
    from drkd_viz.experiments.pipeline import run_pipeline

    runs = tmp_path_factory.mktemp("pipeline") / "runs"
    run_pipeline("quick", runs, quiet=True)
    return runs
