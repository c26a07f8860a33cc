"""The dataset folder layout, spelled once: ``ROOT/<split>/images/`` and ``ROOT/<split>/annotations.json`` (the
embedded dataset's, and any COCO dataset given as a root), and the datasheet at ``ROOT/datasheet.md``."""

from __future__ import annotations

import os
from pathlib import Path

IMAGES = "images"
ANNOTATIONS = "annotations.json"
DATASHEET = "datasheet.md"


def split_files(root: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """(images folder, annotation file) of ``split`` in a dataset root."""
    return Path(root) / split / IMAGES, Path(root) / split / ANNOTATIONS
