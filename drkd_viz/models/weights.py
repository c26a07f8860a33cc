"""Loading weights from local files only, safely, with a clear account of what did not fit.

Accepted files:
* ``.safetensors``: a flat state dict (our checkpoints and exported students);
* ``.pt`` / ``.pth``: read with ``torch.load(..., weights_only=True)`` (never unpickles code); a
  plain state dict, or one wrapped under ``"model"`` / ``"state_dict"`` (torchvision references);
* a whole detector's state dict (torchvision's ``fasterrcnn_resnet50_fpn`` layout and ours are the
  same), or an ImageNet classification backbone (``resnet50-….pth``: ``conv1.*``, ``layer1.*``,
  ``fc.*``; ``mobilenet_v3_large-….pth``: ``features.*``), which is loaded into the backbone only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from drkd_viz.errors import WeightsError
from drkd_viz.models.factory import DetectorConfig, build_detector
from drkd_viz.runs import EXPORT_INFO, EXPORT_WEIGHTS, RunFolder

MAX_LISTED = 8


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A .safetensors file's tensors (on the CPU); a missing or undecodable file is a clear error naming it."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise WeightsError(
            f"cannot read {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]} (the file is damaged or "
            "not a safetensors file; rewrite it, or remove it so that it is rebuilt)"
        ) from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any decoder error becomes one clear message
        raise WeightsError(
            f"cannot read weights from {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}\n"
            "Use a .safetensors file or a .pt/.pth state dict saved with torch.save(model.state_dict(), …)."
        ) from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}  # DDP-saved files


def _is_classification_backbone(state: dict[str, torch.Tensor]) -> bool:
    return not any(k.startswith(("backbone.", "rpn.", "roi_heads.", "head.")) for k in state) and any(
        k.startswith(("conv1.", "layer1.", "features.")) for k in state
    )


@dataclass
class LoadReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # name, file shape, model shape
    backbone_only: bool = False

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self) -> str:
        def listing(items: list[str]) -> str:
            more = f", … ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
            return ", ".join(items[:MAX_LISTED]) + more

        parts = []
        if self.mismatched:
            parts.append(
                f"{len(self.mismatched)} layers have other shapes: "
                + listing([f"{n} (file {list(a)}, model {list(b)})" for n, a, b in self.mismatched])
            )
        if self.missing:
            parts.append(f"{len(self.missing)} model layers are not in the file: " + listing(self.missing))
        if self.unexpected:
            parts.append(
                f"{len(self.unexpected)} layers in the file are unknown to the model: " + listing(self.unexpected)
            )
        return "\n  - ".join(["", *parts])


def load_weights(model: nn.Module, path: str | os.PathLike, skip_mismatched: bool = False) -> LoadReport:
    """Load a local weights file into ``model``.

    A whole-detector file must fit exactly unless ``skip_mismatched`` (e.g. fine-tuning COCO weights
    on other classes: the class-dependent layers are then left as initialised). A classification
    backbone file is loaded into the backbone; its classifier (``fc.*`` / ``classifier.*``) is ignored.
    """
    state = read_state_dict(path)
    report = LoadReport(source=str(path))
    if _is_classification_backbone(state):
        report.backbone_only = True
        state = {f"backbone.body.{k}": v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
        state = {k.replace("backbone.body.features.", "backbone.body."): v for k, v in state.items()}
    target = model.state_dict()
    usable = {}
    for name, tensor in state.items():
        if name not in target:
            if not name.endswith("num_batches_tracked"):
                report.unexpected.append(name)
        elif tuple(tensor.shape) != tuple(target[name].shape):
            report.mismatched.append((name, tuple(tensor.shape), tuple(target[name].shape)))
        else:
            usable[name] = tensor
    # BatchNorm's step counter is bookkeeping, not weights (FrozenBatchNorm files do not have it)
    report.missing = [n for n in target if n not in state and not n.endswith("num_batches_tracked")]
    if report.backbone_only:
        report.missing = [n for n in report.missing if n.startswith("backbone.body.")]
    report.loaded = sorted(usable)
    if not usable:
        raise WeightsError(
            f"nothing in {path} fits this model; is it a weights file for another architecture?" + report.problems()
        )
    if not report.ok and not skip_mismatched:
        raise WeightsError(
            f"{path} does not fit this model:{report.problems()}\n"
            "Check the detector config (backbone, FPN width, number of classes), or load only "
            "what fits with skip_mismatched=True (--skip-mismatched)."
        )
    model.load_state_dict(usable, strict=False)
    return report


def load_exported_detector(folder: str | os.PathLike) -> tuple[nn.Module, DetectorConfig]:
    """A trained detector from a run folder (or its ``export/``): ``student.json`` says how to build it,
    ``student.safetensors`` holds its weights."""
    import json

    folder = Path(folder)
    run = RunFolder(folder)
    export = run.export if run.export.is_dir() else folder
    info_file = export / EXPORT_INFO
    if not info_file.is_file():
        raise WeightsError(f"{folder} holds no exported detector (no export/student.json); is the run finished?")
    cfg = DetectorConfig(**json.loads(info_file.read_text())["detector"])
    model = build_detector(cfg)
    load_weights(model, export / EXPORT_WEIGHTS)
    return model, cfg
