"""Shared helpers for the tests (pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

import yaml


def tiny(root: Path, **sections) -> dict:
    """A config that trains in about a second on the quick dataset."""
    cfg = {
        "name": "tiny",
        "seed": 3,
        "data": {"root": str(root), "max_eval_images": 12},
        "model": {
            "family": "faster_rcnn",
            "backbone": "resnet10",
            "fpn_channels": 32,
            "box_head_width": 64,
            "min_size": 128,
            "max_size": 160,
        },
        "optim": {"lr": 0.01, "warmup_iters": 3},
        "train": {"iterations": 8, "batch_size": 2, "checkpoint_every": 4, "eval_batch_size": 6, "threads": 1},
    }
    for section, values in sections.items():
        cfg[section] = {**cfg.get(section, {}), **values} if isinstance(values, dict) else values
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path
