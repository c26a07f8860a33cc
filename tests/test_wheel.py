"""The wheel works on its own: built from the checkout, installed into a fresh virtual environment, and run
from a folder outside the repository (the CLI, the quick pipeline and the dashboard's first page)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from helpers import copy_repository

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> dict:
    """A virtual environment holding only the built wheel; the dependencies come from this test's own
    environment through a path entry (its .pth files, the editable checkout's among them, are not run)."""
    root = tmp_path_factory.mktemp("wheel")
    # build from a copy of the repository's files (what git tracks or would track): the build writes
    # build/ and *.egg-info next to the sources, and must not see anything git ignores
    source = copy_repository(REPO, root / "source")
    dist = root / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(dist)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = next(dist.glob("drkd_viz-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    outside = root / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DRKD_RUNS")}
    return {"wheel": wheel, "python": python, "bin": venv / "bin", "cwd": outside, "env": env}


def _run(wheel_env: dict, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(args), cwd=wheel_env["cwd"], env=wheel_env["env"], capture_output=True, text=True, timeout=timeout
    )


def test_the_wheel_carries_the_app_the_configs_and_the_shipped_teacher(wheel_env):
    names = set(zipfile.ZipFile(wheel_env["wheel"]).namelist())
    for needed in (
        "drkd_viz/app/Home.py",
        "drkd_viz/app/views/overview.py",
        "drkd_viz/app/_shared/context.py",
        "drkd_viz/configs/demo/teacher_faster_rcnn.yaml",
        "drkd_viz/configs/coco-paper/drkd_faster_rcnn.yaml",
        "drkd_viz/shipped/manifest.json",
        "drkd_viz/shipped/demo-teacher.safetensors",
    ):
        assert needed in names, needed
    assert not any(name.startswith(("tests/", "app/", "configs/")) for name in names)


def test_installed_package_is_the_wheel_not_the_checkout(wheel_env):
    proc = _run(
        wheel_env, str(wheel_env["python"]), "-c", "import drkd_viz, drkd_viz.resources as r; print(r.app_entry())"
    )
    assert proc.returncode == 0, proc.stderr
    entry = Path(proc.stdout.strip())
    assert entry.is_file() and not entry.is_relative_to(REPO), entry


def test_cli_version_and_quick_pipeline_from_outside_the_repository(wheel_env):
    from importlib import metadata

    version = _run(wheel_env, str(wheel_env["bin"] / "drkd-viz"), "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"drkd-viz {metadata.version('drkd_viz')}"
    pipeline = _run(wheel_env, str(wheel_env["bin"] / "drkd-viz"), "pipeline", "--preset", "quick", "--quiet")
    assert pipeline.returncode == 0, pipeline.stderr[-3000:]
    runs = wheel_env["cwd"] / "runs" / "quick"  # the default runs folder, below the working directory
    report = json.loads((runs / "reports" / "quick" / "report.json").read_text())
    assert set(report["provenance"]["runs"]) >= {"teacher", "baseline-s0", "drkd-s0"}


def test_dashboard_first_page_from_the_wheel(wheel_env):
    script = """
import os, sys
from streamlit.testing.v1 import AppTest
from drkd_viz.resources import app_entry
at = AppTest.from_file(str(app_entry()), default_timeout=300).run()
assert not at.exception, [e.message for e in at.exception]
print("TITLE", [t.value for t in at.title])
"""
    env = {**wheel_env["env"], "DRKD_RUNS": str(wheel_env["cwd"] / "runs" / "quick")}
    proc = subprocess.run(
        [str(wheel_env["python"]), "-c", script],
        cwd=wheel_env["cwd"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "TITLE" in proc.stdout
