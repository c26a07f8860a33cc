"""Serving the dashboard: the ``streamlit run`` command with the flags it needs whatever config files say, and a
server for tests and benchmarks. Safe by default: 127.0.0.1, no file watcher, no usage statistics, the upload
limit; the runs folder travels in the environment (``DRKD_RUNS``), so the browser never names a path."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from drkd_viz.data.images import UPLOAD_MAX_MB
from drkd_viz.errors import UserError
from drkd_viz.resources import app_entry
from drkd_viz.runs import RUNS_ENV

APP_ENTRY = app_entry()  # the repository's app/Home.py, or the copy inside an installed wheel


def streamlit_command(
    host: str = "127.0.0.1", port: int = 8501, entry: Path = APP_ENTRY, headless: bool = True
) -> list[str]:
    """``python -m streamlit run`` with the flags the dashboard needs whatever config files say:
    the given address (127.0.0.1 by default), no file watcher (it trips over torch), no usage
    statistics, the upload limit, no browser opened when ``headless``. The runs folder travels in
    the environment (:func:`app_environment`)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(entry),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true" if headless else "false",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--server.maxUploadSize",
        str(UPLOAD_MAX_MB),
    ]


def check_entry(entry: Path = APP_ENTRY) -> Path:
    if not entry.is_file():
        raise UserError(
            f"the dashboard's entry file {entry} is missing: reinstall drkd_viz (a wheel carries it as "
            "drkd_viz/app, a checkout as app/)"
        )
    return entry


def exec_server(runs: Path, host: str = "127.0.0.1", port: int = 8501, headless: bool = True) -> None:
    """Replace this process by the dashboard's server on ``runs``: signals (Ctrl+C, a test's terminate)
    then reach Streamlit itself. Never returns."""
    command = streamlit_command(host=host, port=port, headless=headless)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, app_environment(runs))


def app_environment(runs: Path) -> dict[str, str]:
    return {**os.environ, RUNS_ENV: str(runs)}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextmanager
def serve(runs: Path, port: int | None = None, log: Path | None = None, timeout: float = 120.0) -> Iterator[str]:
    """Run ``drkd-viz app --runs RUNS`` on 127.0.0.1 (a free port unless given) until the block ends;
    yields the URL once the server answers its health check. For tests and benchmarks."""
    port = port or free_port()
    command = [sys.executable, "-m", "drkd_viz.cli", "app", "--runs", str(runs), "--port", str(port)]
    out = open(log, "w", encoding="utf-8") if log else subprocess.DEVNULL  # noqa: SIM115  (closed below)
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log else ""
                raise UserError(f"the dashboard server exited with code {process.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise UserError(f"the dashboard server did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if log:
            out.close()
