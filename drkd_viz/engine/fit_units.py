"""Fit the teacher-side graph units on the teacher's own detection loss (``drkd_viz.distill.fitted_units`` says why).

The teacher stays frozen (its BatchNorm statistics too); one zero-initialised graph unit per FPN level sits as a
residual block between its FPN and its heads, and only the units are trained, on the teacher's train split, by the
teacher's detection loss. The units are then saved beside the teacher and every distillation run that asks for
them (``pr_teacher_units: fitted``) uses them frozen.

    drkd-viz fit-units --teacher runs/demo/teacher --levels P2,P3,P4,P5,P6 --iterations 200
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn

from drkd_viz.data.coco import collate_detection
from drkd_viz.distill.diagnostics import residual_ratio
from drkd_viz.distill.fitted_units import UnitFit, build_units, fitted_state, units_file
from drkd_viz.engine.config import load_config
from drkd_viz.engine.data import open_split
from drkd_viz.models.capture import name_levels
from drkd_viz.models.weights import load_exported_detector
from drkd_viz.runs import RunFolder
from drkd_viz.utils.io import atomic_write, atomic_write_json


def _insert_units(model: nn.Module, units: nn.ModuleDict, record: dict) -> torch.utils.hooks.RemovableHandle:
    """Each FPN level of ``model`` goes through its unit before the heads see it (a forward hook on the backbone);
    ``record`` keeps the last inputs and residuals, for the residual ratio."""

    def on_backbone(_module, inputs, output):
        named = name_levels(output, inputs[0].shape[-2])
        out = OrderedDict()
        for (key, value), level in zip(output.items(), named, strict=True):
            if level in units:
                parts = units[level].parts(value)
                record[level] = (value.detach(), parts.residual.detach())
                value = parts.relation
            out[key] = value
        return out

    return model.backbone.register_forward_hook(on_backbone)


def fit_teacher_units(teacher: str | Path, fit: UnitFit, progress: bool = True) -> Path:
    """The fitted units of ``teacher`` for ``fit``: made and saved when absent, else the cached file."""
    from tqdm.auto import tqdm

    path = units_file(teacher, fit)
    if path.is_file():
        return path
    started = time.perf_counter()
    model, detector = load_exported_detector(teacher)
    data = load_config(RunFolder(Path(teacher)).config).data
    dataset = open_split(data, "train", train=True)
    torch.manual_seed(fit.seed)
    units = build_units(detector.fpn_channels, fit)
    record: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handle = _insert_units(model, units, record)
    model.requires_grad_(False).train()
    for module in model.modules():  # the teacher's own normalisation stays as trained
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    units.train()
    optimizer = torch.optim.SGD(units.parameters(), lr=fit.lr, momentum=0.9, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(fit.seed)
    losses = []
    try:
        for step in tqdm(range(fit.iterations), desc="fit teacher graph units", disable=not progress):
            for group in optimizer.param_groups:
                group["lr"] = fit.lr * 0.5 * (1 + math.cos(math.pi * step / fit.iterations))
            picks = torch.randint(len(dataset), (fit.batch_size,), generator=generator).tolist()
            images, targets = collate_detection([dataset[i] for i in picks])
            loss = sum(model(images, targets).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(units.parameters(), 10.0)
            optimizer.step()
            losses.append(float(loss.detach()))
    finally:
        handle.remove()
    ratios = {lv: residual_ratio(res, x) for lv, (x, res) in record.items()}
    atomic_write(path, lambda fh: fh.write(save(fitted_state(units))))
    atomic_write_json(
        path.with_suffix(".json"),
        {
            "fit": {**fit.__dict__, "levels": list(fit.levels), "nodes": list(fit.nodes)},
            "detection_loss_first_last": [
                sum(losses[:10]) / max(len(losses[:10]), 1),
                sum(losses[-10:]) / max(len(losses[-10:]), 1),
            ],
            "residual_ratio_last_batch": ratios,
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
    )
    return path
