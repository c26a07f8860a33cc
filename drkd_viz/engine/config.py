"""Run configuration: YAML files backed by typed dataclasses.

Unknown or misspelt keys fail at load time with the list of valid keys (and the closest match);
values are checked against the field's type. ``--set section.key=value`` overrides a loaded file.
Every run writes its fully resolved config (``config.yaml``) beside its results.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from drkd_viz.errors import UserError
from drkd_viz.models.factory import DetectorConfig


class ConfigError(UserError):
    """A configuration file or override that cannot be used as given."""


@dataclass
class DataConfig:
    """Where the images and annotations are. Either ``root`` with the embedded layout
    (``root/{train,val,test}/{images,annotations.json}``), or explicit folders/files per split."""

    root: str | None = None
    preset: str | None = None  # embedded dataset preset to generate into ``root`` if it is absent
    dataset_seed: int = 0
    train_images: str | None = None
    train_annotations: str | None = None
    val_images: str | None = None
    val_annotations: str | None = None
    test_images: str | None = None
    test_annotations: str | None = None
    hflip_prob: float = 0.5
    shorter_sides: list[int] | None = None  # data-level multi-scale resize (the detector resizes again)
    max_side: int | None = None
    workers: int = 0  # DataLoader worker processes
    max_train_images: int | None = None  # use only the first N training images (dry runs)
    max_eval_images: int | None = None

    def split_paths(self, split: str) -> tuple[Path, Path]:
        images, annotations = getattr(self, f"{split}_images"), getattr(self, f"{split}_annotations")
        if images and annotations:
            return Path(images), Path(annotations)
        if self.root:
            return Path(self.root) / split / "images", Path(self.root) / split / "annotations.json"
        raise ConfigError(
            f"data: no '{split}' split: set data.root, or data.{split}_images and data.{split}_annotations"
        )


@dataclass
class OptimConfig:
    lr: float = 0.02  # for the global batch
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    warmup_factor: float = 0.001  # lr starts at lr * warmup_factor and grows linearly
    schedule: Literal["step", "cosine"] = "step"
    milestones: list[float] = field(default_factory=lambda: [0.8])  # step: fractions of the run (or iterations if > 1)
    gamma: float = 0.1
    min_lr_factor: float = 0.0  # cosine: final lr = lr * min_lr_factor
    clip_grad_norm: float | None = 10.0  # None: no clipping
    amp: bool = True  # mixed precision; only used on CUDA


@dataclass
class TrainConfig:
    iterations: int = 1000
    batch_size: int = 8  # global batch: split evenly across torchrun processes
    checkpoint_every: int = 200
    keep_checkpoints: int = 2  # older periodic checkpoints are removed; the final one stays
    eval_split: Literal["val", "test", "train", "none"] = "val"  # evaluated at the end of training
    eval_batch_size: int = 8
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = True  # deterministic algorithms (CPU results are then reproducible bit for bit)
    threads: int | None = None  # torch CPU threads (None: torch's default)
    init_weights: str | None = None  # local weights file loaded into the detector before training
    skip_mismatched: bool = False  # with init_weights: load only the layers that fit


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: DetectorConfig = field(default_factory=DetectorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: dict[str, Any] | None = None  # the distillation method's own section (checked by that method)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---- typed loading ------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {_type_name(tp)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {_type_name(tp)}")


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and values of the wrong type."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init and f.name != "extra"]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{where}: unknown key '{key}'{hint}; valid keys are: {', '.join(names)}")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except UserError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


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
    if data is not None:
        raw = _merge(raw, data)
    for key, value in parse_overrides(overrides):
        _set_path(raw, key, value)
    return from_dict(RunConfig, raw, where=str(path) if path else "config")


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
