"""Size of each install set: the core against the extras and the full [dev] install, in packages and MB.

    python bench/install_size.py

For each set, pip resolves what a fresh environment would install (``pip install --dry-run --ignore-installed
--report``, with constraints.txt; nothing is installed or downloaded beyond the index metadata), and the
installed size of each resolved package is read from this environment's own copy (its dist-info RECORD).
Run it from an environment holding the [dev] install, so that every package is there to measure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETS = {
    "core": ".",
    "core + app": ".[app]",
    "core + app + notebooks (make demo)": ".[app,notebooks]",
    "full (dev: every extra + test tools, make test)": ".[dev]",
}


def resolve(target: str) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--ignore-installed",
                "--quiet",
                "-c",
                str(REPO / "constraints.txt"),
                "--report",
                str(report),
                target,
            ],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        return [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]


def installed_bytes(name: str) -> int | None:
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    total = 0
    for file in dist.files or []:
        path = Path(dist.locate_file(file))
        if path.is_file():
            total += path.stat().st_size
    return total


# torch's Linux wheels pull CUDA libraries (several GB) whatever else is installed
TORCH_STACK = ("torch", "torchvision", "triton", "nvidia-", "cuda-")


def main() -> None:
    print(f"{'install set':<50} {'packages':>9} {'MB':>8} {'MB without torch + CUDA':>24}")
    for label, target in SETS.items():
        names = [n for n in resolve(target) if n.lower().replace("-", "_") != "drkd_viz"]
        sizes = {n: installed_bytes(n) for n in names}
        missing = [n for n, b in sizes.items() if b is None]
        mb = sum(b for b in sizes.values() if b) / 1e6
        rest = sum(b for n, b in sizes.items() if b and not n.lower().startswith(TORCH_STACK)) / 1e6
        note = f"  ({len(missing)} not in this environment: {', '.join(missing[:5])})" if missing else ""
        print(f"{label:<50} {len(names):>9} {mb:>8.0f} {rest:>24.0f}{note}")


if __name__ == "__main__":
    main()
