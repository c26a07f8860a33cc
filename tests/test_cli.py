"""The main-job command and the data verbs, as a user runs them."""

from __future__ import annotations

import subprocess
import sys


def test_demo_command_builds_and_shows_the_dataset(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "drkd_viz.cli", "demo", "--runs", str(tmp_path), "--preset", "quick", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Embedded dataset 'quick' (seed 0) generated" in proc.stdout
    assert "train" in proc.stdout and "small" in proc.stdout
    assert (tmp_path / "quick" / "data" / "datasheet.md").is_file()
    again = subprocess.run(
        [sys.executable, "-m", "drkd_viz.cli", "demo", "--runs", str(tmp_path), "--preset", "quick", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0 and "found" in again.stdout


def test_check_data_on_real_coco(mini_coco):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "drkd_viz.cli",
            "check-data",
            "--annotations",
            str(mini_coco / "annotations.json"),
            "--images",
            str(mini_coco / "images"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "158 images, 1424 annotations (16 crowd)" in proc.stdout and "all 158 images decode" in proc.stdout
