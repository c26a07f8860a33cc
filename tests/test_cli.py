"""The main-job command and the data verbs, as a user runs them."""

from __future__ import annotations

import subprocess
import sys


def test_demo_command_shows_the_report_then_serves_the_dashboard(quick_runs, tmp_path):
    """`make demo` runs `drkd-viz demo`: the (cached) pipeline, its report, then the dashboard."""
    import shutil
    import time
    import urllib.request

    from drkd_viz.dashboard import free_port

    shutil.copytree(quick_runs, tmp_path / "quick", symlinks=True)
    command = [sys.executable, "-m", "drkd_viz.cli", "demo", "--runs", str(tmp_path), "--preset", "quick", "--quiet"]
    proc = subprocess.run([*command, "--no-app"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "# drkd_viz experiments report — preset `quick`" in proc.stdout and "all runs cached" in proc.stdout
    assert "student runs" in proc.stdout and "faster than the teacher" in proc.stdout

    port = free_port()
    server = subprocess.Popen(
        [*command, "--headless", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline, health = time.time() + 120, None
        while time.time() < deadline and server.poll() is None:
            try:
                health = urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        assert health == b"ok", f"the dashboard did not come up (exit code {server.poll()})"
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert f"dashboard of {(tmp_path / 'quick').resolve()} at http://127.0.0.1:{port}" in out


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
