"""The index of the trained models shipped inside the package (``manifest.json`` beside this file): what each file
is, where it came from and what it measured. A leaf module (the standard library only), so that any layer can ask
what is shipped; installing a shipped model into a run folder and shipping a new one live in
:mod:`drkd_viz.experiments.shipped`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHIPPED_DIR = Path(__file__).resolve().parent
MAX_SHIPPED_BYTES = 30 * 2**20
CHECK_IMAGES = 40


@dataclass
class ShippedModel:
    name: str
    file: str  # relative to the manifest's folder
    sha256: str
    bytes: int
    dtype: str
    config_key: str  # the pipeline key of the run config below
    seed: int
    generator_version: int
    config_yaml: str  # the run's resolved config.yaml
    student_json: dict[str, Any]  # the run's export/student.json (architecture, classes)
    command: str  # how to rebuild the file
    metrics: dict[str, Any]  # {"test": {...}}: measured on the shipped weights
    check: dict[str, Any]  # {"images": N, "metrics": {...}}: the first N test images, for the test

    def path(self, folder: Path = SHIPPED_DIR) -> Path:
        return folder / self.file


def shipped_models(folder: Path = SHIPPED_DIR) -> list[ShippedModel]:
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return []
    return [ShippedModel(**entry) for entry in json.loads(manifest.read_text())["models"]]


def find_shipped(config_key: str, folder: Path = SHIPPED_DIR) -> ShippedModel | None:
    return next((m for m in shipped_models(folder) if m.config_key == config_key), None)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def reference_teacher(preset: str, generator_version: int, folder: Path = SHIPPED_DIR) -> dict[str, Any] | None:
    """What the datasheet prints about how hard a dataset is: the shipped ``<preset>-teacher`` of this generator
    version (its detector, test metrics, file and rebuild command), or None when none is shipped."""
    for m in shipped_models(folder):
        if m.generator_version == generator_version and m.name == f"{preset}-teacher":
            return {
                "detector": m.student_json["detector"],
                "test": m.metrics["test"],
                "file": m.file,
                "command": m.command,
            }
    return None
