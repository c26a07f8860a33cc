"""Bad values never end in a traceback: every config field is type- and range-checked at load time, and
every loader refusal names its file."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import typing

import pytest
import torch

from drkd_viz.engine.config import RunConfig, load_config
from drkd_viz.errors import UserError

# values of every kind a YAML file or a --set override can produce
ODD_VALUES = [
    0,
    -1,
    1,
    3,
    2**40,
    -(2**40),
    0.5,
    -0.5,
    1e308,
    float("nan"),
    float("inf"),
    "x",
    "",
    "resnet18",
    None,
    True,
    False,
    [],
    [1],
    [0.5, -1],
    ["a"],
    {},
    {"a": 1},
    {"P2": 0},
]
DISTILL_FIELDS = [
    "method",
    "preset",
    "pr_weight",
    "ir_weight",
    "ins_weight",
    "fi_weight",
    "pr_levels",
    "nodes",
    "glore_normalize",
    "ir_levels",
    "roi_size",
    "relation_filter",
    "ir_target",
    "relation_scale",
    "norm",
    "fi_levels",
    "weight_schedule",
]


class Foreign:
    """An object the safe loader (torch.load with weights_only=True) refuses to unpickle."""

    def __init__(self) -> None:
        self.payload = 1


def _field_paths(cls: type = RunConfig, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    paths = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            paths += _field_paths(hints[f.name], f"{prefix}{f.name}.")
        elif f.name != "distill":
            paths.append(prefix + f.name)
    return paths + [f"distill.{name}" for name in DISTILL_FIELDS] if not prefix else paths


def _nested(path: str, value) -> dict:
    section, _, key = path.rpartition(".")
    if not section:
        return {key: value}
    if section == "distill":
        return {"distill": {"method": "drkd", "teacher": "teacher-run", key: value}}
    return {section: {key: value}}


def _loads_or_user_error(data: dict) -> None:
    try:
        cfg = load_config(data=data)
    except UserError as exc:
        assert str(exc).strip(), data
        return
    assert isinstance(cfg, RunConfig)


def test_every_field_takes_any_value_or_says_why():
    paths = _field_paths()
    assert len(paths) > 60 and "train.batch_size" in paths and "model.min_size" in paths
    for path in paths:
        for value in ODD_VALUES:
            _loads_or_user_error(_nested(path, value))


def test_random_combinations_of_values():
    rng = random.Random(0)
    paths = _field_paths()
    for _ in range(400):
        data: dict = {}
        for path in rng.sample(paths, 3):
            for section, inner in _nested(path, rng.choice(ODD_VALUES)).items():
                if isinstance(inner, dict) and isinstance(data.get(section), dict):
                    data[section].update(inner)
                else:
                    data[section] = inner
        _loads_or_user_error(data)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=0", "config.train.batch_size: 0 is out of range; it must be >= 1"),
        ("optim.lr=-0.1", "config.optim.lr: -0.1 is out of range; it must be > 0"),
        ("data.hflip_prob=1.5", "config.data.hflip_prob: 1.5 is out of range; it must be in [0, 1]"),
        ("model.min_size=4", "config.model.min_size: 4 is out of range; it must be in [16, 4096]"),
        ("optim.momentum=1", "config.optim.momentum: 1.0 is out of range; it must be in [0, 1)"),
        ("seed=-3", "config.seed: -3 is out of range; it must be in [0, 4294967295]"),
        ("model.max_size=100", "max_size (100) must be >= min_size (256)"),
        ("optim.lr=.inf", "config.optim.lr: expected a finite number"),
    ],
)
def test_out_of_range_values_name_key_value_and_range(override, message):
    with pytest.raises(UserError) as info:
        load_config(overrides=[override])
    assert message in str(info.value)


def test_a_checkpoint_the_safe_loader_refuses_is_a_clear_error(quick_runs, tmp_path):
    """state.pt matches its recorded sha256 but holds an object torch.load(weights_only=True) refuses."""
    from drkd_viz.engine.checkpoint import latest_checkpoint, load_checkpoint, sha256_file

    run = tmp_path / "run"
    shutil.copytree(quick_runs / "baseline-s0", run)
    ckpt = latest_checkpoint(run / "checkpoints")
    torch.save({"payload": Foreign()}, ckpt.path / "state.pt")
    meta = json.loads((ckpt.path / "meta.json").read_text())
    meta["sha256"]["state.pt"] = sha256_file(ckpt.path / "state.pt")
    (ckpt.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError) as info:
        load_checkpoint(latest_checkpoint(run / "checkpoints"), None)
    text = str(info.value)
    assert str(ckpt.path / "state.pt") in text and "not a drkd_viz training state" in text


def test_damaged_weights_files_name_the_file(quick_runs, tmp_path):
    from drkd_viz.engine.inference import load_student

    run = tmp_path / "run"
    shutil.copytree(quick_runs / "baseline-s0", run)
    (run / "export" / "student.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match=r"student\.safetensors"):
        load_student(run)


def test_overrides_never_change_the_callers_mapping():
    """A script that loads variants from one base mapping must not see one variant's override in the next
    (this leaked lr 0.04 from one student probe variant into the following one)."""
    base = {"optim": {"lr": 0.02}, "model": {"min_size": 160, "max_size": 192}}
    first = load_config(data=base, overrides=["optim.lr=0.04", "model.min_size=128"])
    second = load_config(data=base)
    assert first.optim.lr == 0.04 and first.model.min_size == 128
    assert second.optim.lr == 0.02 and second.model.min_size == 160
    assert base == {"optim": {"lr": 0.02}, "model": {"min_size": 160, "max_size": 192}}
