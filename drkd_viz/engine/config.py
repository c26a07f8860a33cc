"""Run configuration: YAML files backed by typed dataclasses.

Unknown or misspelt keys fail at load time with the list of valid keys (and the closest match);
values are checked against the field's type and range (a message names the key, the value and the
allowed range). ``--set section.key=value`` overrides a loaded file.
Every run writes its fully resolved config (``config.yaml``) beside its results.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from drkd_viz.data.layout import split_files
from drkd_viz.distill.config import DistillConfig, resolve_distill
from drkd_viz.models.factory import DetectorConfig
from drkd_viz.utils.typed_config import AT_LEAST_0, AT_LEAST_1, FRACTION, POSITIVE, SEED, ConfigError, Range, from_dict

__all__ = [
    "ConfigError",
    "DataConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "dump_config",
    "load_config",
    "merge_sections",
]


@dataclass
class DataConfig:
    """Where the images and annotations are. Either ``root`` with the embedded layout
    (``root/{train,val,test}/{images,annotations.json}``), or explicit folders/files per split."""

    root: str | None = None
    preset: str | None = None  # embedded dataset preset to generate into ``root`` if it is absent
    dataset_seed: Annotated[int, SEED] = 0
    train_images: str | None = None
    train_annotations: str | None = None
    val_images: str | None = None
    val_annotations: str | None = None
    test_images: str | None = None
    test_annotations: str | None = None
    hflip_prob: Annotated[float, FRACTION] = 0.5
    shorter_sides: list[Annotated[int, Range(16, 4096)]] | None = (
        None  # data-level multi-scale resize (the detector resizes again)
    )
    max_side: Annotated[int, Range(16, 8192)] | None = None
    workers: Annotated[int, Range(0, 64)] = 0  # DataLoader worker processes
    max_train_images: Annotated[int, AT_LEAST_1] | None = None  # use only the first N training images (dry runs)
    max_eval_images: Annotated[int, AT_LEAST_1] | None = None

    def split_paths(self, split: str) -> tuple[Path, Path]:
        images, annotations = getattr(self, f"{split}_images"), getattr(self, f"{split}_annotations")
        if images and annotations:
            return Path(images), Path(annotations)
        if self.root:
            return split_files(self.root, split)
        raise ConfigError(
            f"data: no '{split}' split: set data.root, or data.{split}_images and data.{split}_annotations"
        )


@dataclass
class OptimConfig:
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: Annotated[float, POSITIVE] = 0.02  # for the global batch
    momentum: Annotated[float, Range(0, 1, high_open=True)] = 0.9  # sgd only
    weight_decay: Annotated[float, AT_LEAST_0] = 1e-4
    warmup_iters: Annotated[int, AT_LEAST_0] = 100
    warmup_factor: Annotated[float, Range(0, 1, low_open=True)] = (
        0.001  # lr starts at lr * warmup_factor and grows linearly
    )
    schedule: Literal["step", "cosine"] = "step"
    milestones: list[Annotated[float, POSITIVE]] = field(
        default_factory=lambda: [0.8]
    )  # step: fractions of the run (or iterations if > 1)
    gamma: Annotated[float, Range(0, 1, low_open=True)] = 0.1
    min_lr_factor: Annotated[float, FRACTION] = 0.0  # cosine: final lr = lr * min_lr_factor
    clip_grad_norm: Annotated[float, POSITIVE] | None = 10.0  # None: no clipping
    amp: bool = True  # mixed precision; only used on CUDA


@dataclass
class TrainConfig:
    iterations: Annotated[int, AT_LEAST_1] = 1000
    batch_size: Annotated[int, AT_LEAST_1] = 8  # global batch: split evenly across torchrun processes
    checkpoint_every: Annotated[int, AT_LEAST_1] = 200
    # distillation diagnostics (gradient norms and cosines, teacher-side collapse) every this many iterations;
    # 0 turns them off. They do not change training: the pipeline's cache key leaves this out
    log_every: Annotated[int, AT_LEAST_0] = 10
    keep_checkpoints: Annotated[int, AT_LEAST_1] = 2  # older periodic checkpoints are removed; the final one stays
    eval_split: Literal["val", "test", "train", "none"] = "val"  # evaluated at the end of training
    eval_batch_size: Annotated[int, AT_LEAST_1] = 8
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = True  # deterministic algorithms (CPU results are then reproducible bit for bit)
    threads: Annotated[int, Range(1, 1024)] | None = None  # torch CPU threads (None: torch's default)
    init_weights: str | None = None  # local weights file loaded into the detector before training
    skip_mismatched: bool = False  # with init_weights: load only the layers that fit


@dataclass
class RunConfig:
    name: str = "run"
    seed: Annotated[int, SEED] = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: DetectorConfig = field(default_factory=DetectorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig | None = None  # resolved at load time: no switch left unset; None: no distillation

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _set_path(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
    node[keys[-1]] = value


def parse_overrides(overrides: list[str] | None) -> list[tuple[str, Any]]:
    parsed = []
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        key, raw = item.split("=", 1)
        parsed.append((key.strip(), yaml.safe_load(raw)))
    return parsed


def load_config(
    path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    data: dict[str, Any] | None = None,
) -> RunConfig:
    """Load a run config from YAML (or a dict), apply ``key=value`` overrides, check every key and type."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (data, model, optim, train, …)")
    if data is not None:  # a deep copy: the overrides below must not reach into the caller's mapping
        raw = merge_sections(raw, copy.deepcopy(data))
    for key, value in parse_overrides(overrides):
        _set_path(raw, key, value)
    cfg = from_dict(RunConfig, raw, where=str(path) if path else "config")
    if cfg.distill is not None:  # completed from its preset now, so a wrong level fails before any training
        cfg.distill = resolve_distill(cfg.distill, cfg.model.levels)
    return cfg


def merge_sections(base: dict, update: dict) -> dict:
    """``update`` over ``base``, recursively for nested mappings (config sections)."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge_sections(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dump_config(cfg: RunConfig, leave_out: tuple[tuple[str, str], ...] = ()) -> str:
    """The config as YAML; ``leave_out``: (section, key) pairs not written."""
    plain = _plain(cfg.to_dict())
    for section, key in leave_out:
        plain[section].pop(key, None)
    return yaml.safe_dump(plain, sort_keys=False)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
