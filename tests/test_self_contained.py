"""The repository is enough: a copy of it with nothing beside it (no side folders, no runs) passes a fast
subset of the suite, real-COCO tests included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import copy_repository

REPO = Path(__file__).resolve().parents[1]
FAST_SUBSET = [
    "tests/test_coco_data.py",
    "tests/test_packaging.py",
    "tests/test_cli.py::test_check_data_on_real_coco",
    "tests/test_bad_config.py::test_out_of_range_values_name_key_value_and_range",
]


@pytest.mark.slow
def test_a_lone_copy_passes_a_fast_subset(tmp_path):
    lone = tmp_path / "alone" / "drkd_viz"  # its parent holds nothing else
    copy_repository(REPO, lone)
    subprocess.run(["git", "init", "-q", str(lone)], check=True)  # the packaging test lists files with git
    subprocess.run(["git", "-C", str(lone), "add", "-A"], check=True)
    assert sorted(p.name for p in lone.parent.iterdir()) == ["drkd_viz"]
    # the copy's own sources come first on the path, before the editable install of this checkout
    env = {**os.environ, "PYTHONPATH": str(lone)}
    env.pop("DRKD_RUNS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FAST_SUBSET],
        cwd=lone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "error" not in proc.stdout.splitlines()[-1]
    where = subprocess.run(
        [sys.executable, "-c", "import drkd_viz; print(drkd_viz.__file__)"],
        cwd=lone,
        env=env,
        capture_output=True,
        text=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(lone)
