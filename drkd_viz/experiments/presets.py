"""Pipeline presets: what ``drkd-viz pipeline`` trains, read from YAML (``configs/presets/{quick,demo,study}.yaml``,
or any file a user names with ``--preset-file``) and checked key by key like a run config."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drkd_viz.distill.config import ABLATIONS, CONTROLS
from drkd_viz.engine.config import load_config, merge_sections
from drkd_viz.resources import configs_dir
from drkd_viz.utils.typed_config import ConfigError, from_dict

IMITATIONS = ("feature_imitation", "pkd")  # the feature-distillation methods DRKD is compared with
# trained on every seed of a preset (ablations on ablation_seeds); the controls' arms are compared too
COMPARED = ("baseline", *IMITATIONS, "drkd", *CONTROLS)
REQUIRED = ("dataset", "family", "teacher", "student", "methods", "seeds")
METHODS = ("baseline", *IMITATIONS, *ABLATIONS, *CONTROLS)  # every name a preset's methods may list


@dataclass(frozen=True)
class PipelinePreset:
    name: str
    dataset: str  # embedded dataset preset
    family: str
    teacher: dict[str, Any]  # run-config sections (merged over the base config)
    student: dict[str, Any]
    methods: tuple[str, ...]  # "baseline", "feature_imitation", "pkd", "drkd", an ablation or a control
    seeds: tuple[int, ...]
    ablation_seeds: tuple[int, ...] = ()
    # a folder holding {teacher,student}_<family>.yaml: a name under configs/, or a path (relative to the preset
    # file); None: the teacher and student sections are the whole run configs
    base: str | None = None
    notes: str = ""
    # runs live in RUNS/<subfolder>/ (the data in RUNS/data is shared): a preset with its own schedules
    # then sits beside the demo in one runs folder without replacing the demo's runs
    subfolder: str = ""
    # students trained at once after the teacher (each in its own process, with its config's threads)
    parallel_jobs: int = 1
    # steps of backbone pre-training on crops of the train split (the stand-in for ImageNet weights);
    # 0: detectors start from scratch. Each backbone is pre-trained once and cached in RUNS/pretrain/.
    pretrain_iterations: int = 0
    # the record of every variant tried on val before this preset's settings were chosen (a JSON file written
    # by scripts/probe_student.py, under configs/ or relative to the preset file): the report's appendix
    val_record: str | None = None
    # settings added to every distilled student's distill: section (an ablation's or a control's own win)
    distill: dict[str, Any] = field(default_factory=dict)

    def base_section(self, role: str) -> dict[str, Any]:
        """The base run config of ``role`` (teacher | student) the preset's sections are merged over."""
        if self.base is None:
            return {"model": {"family": self.family}}
        return yaml.safe_load((configs_dir() / self.base / f"{role}_{self.family}.yaml").read_text())


def _located(value: str, folder: Path, where: str, is_dir: bool) -> str:
    """``value`` as an absolute path: relative to the preset file's folder if it is there, else under configs/."""
    for candidate in (folder / value, configs_dir() / value):
        if candidate.is_dir() if is_dir else candidate.is_file():
            return str(candidate.resolve())
    kind = "folder" if is_dir else "file"
    raise ConfigError(f"{where}: no {kind} {value!r} beside the preset file ({folder}) or under {configs_dir()}")


def load_preset(path: str | os.PathLike) -> PipelinePreset:
    """Read and check a pipeline preset file; its name is the file's stem unless it sets ``name``."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{path} is a folder; --preset-file takes a YAML file (like {configs_dir() / 'presets'}/demo.yaml)"
        )
    if not path.is_file():
        raise ConfigError(f"preset file not found: {path} (copy one of {configs_dir() / 'presets'} to start)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if raw is None:
        raise ConfigError(f"{path} is empty; a preset sets at least {', '.join(REQUIRED)}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of preset keys, got {type(raw).__name__}")
    raw = {"name": path.stem, **{k: v for k, v in raw.items() if not str(k).startswith("x-")}}  # x-: YAML anchors
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise ConfigError(f"{path}: missing {', '.join(missing)} (see {configs_dir() / 'presets' / 'demo.yaml'})")
    preset = from_dict(PipelinePreset, raw, where=str(path))
    unknown = [m for m in preset.methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"{path}: unknown method {unknown[0]!r} in methods; choose from {list(METHODS)}")
    if not preset.seeds:
        raise ConfigError(f"{path}: seeds is empty; list at least one seed, e.g. seeds: [0]")
    if preset.parallel_jobs < 1 or preset.pretrain_iterations < 0:
        raise ConfigError(f"{path}: parallel_jobs must be >= 1 and pretrain_iterations >= 0")
    located = {}
    if preset.base is not None:
        located["base"] = _located(preset.base, path.parent, f"{path}: base", is_dir=True)
    if preset.val_record is not None:
        located["val_record"] = _located(preset.val_record, path.parent, f"{path}: val_record", is_dir=False)
    preset = PipelinePreset(**{**preset.__dict__, **located})
    for role in ("teacher", "student"):  # a wrong key in a section is found now, not after the teacher trained
        load_config(data=merge_sections(preset.base_section(role), getattr(preset, role)))
    return preset


def shipped_presets() -> dict[str, PipelinePreset]:
    """The presets under configs/presets/, by name."""
    return {path.stem: load_preset(path) for path in sorted((configs_dir() / "presets").glob("*.yaml"))}


PRESETS: dict[str, PipelinePreset] = shipped_presets()
