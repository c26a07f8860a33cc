"""What a run or report records about where it came from: versions, host, git commit."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("drkd_viz", "torch", "torchvision", "numpy", "pillow", "pycocotools", "faster-coco-eval", "safetensors")


def git_commit() -> dict[str, Any]:
    """The commit of the drkd_viz source tree this run used, and whether it had local changes."""
    source = Path(__file__).resolve().parents[2]
    if not (source / "pyproject.toml").is_file():  # an installed wheel: its folder may sit in anyone's repository
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return {"commit": commit or None, "dirty": bool(dirty)} if commit else {"commit": None, "dirty": None}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment_info() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "git": git_commit(),
    }
