"""The command line's typed choices: `--help` lists them, and a typo fails at once with the list."""

from __future__ import annotations

from enum import Enum

from drkd_viz.resources import configs_dir


class DatasetPreset(str, Enum):
    quick = "quick"
    demo = "demo"


# the pipeline presets shipped under configs/presets/ (listed by file name: --help stays fast)
PipelinePresetName = Enum(
    "PipelinePresetName",
    {path.stem: path.stem for path in sorted((configs_dir() / "presets").glob("*.yaml"))},
    type=str,
)


class Split(str, Enum):
    val = "val"
    test = "test"


class Backend(str, Enum):
    faster = "faster"
    pycocotools = "pycocotools"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class Backbone(str, Enum):
    resnet10 = "resnet10"
    resnet18 = "resnet18"
    resnet34 = "resnet34"
    resnet50 = "resnet50"
    resnet101 = "resnet101"
