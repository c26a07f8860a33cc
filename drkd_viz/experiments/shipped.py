"""Trained models shipped inside the package, so the README's main job need not train its teacher.

``drkd_viz/shipped/manifest.json`` lists each file with what makes it reproducible and checkable:
the run config it was trained with and that config's pipeline key, its seed, the sha256 of the file,
the command that rebuilds it, and its metrics measured on the shipped (fp16) weights, on the whole
test split and on the first ``check_images`` test images (``tests/test_shipped.py`` re-evaluates
that subset). Files are fp16 safetensors, at most 30 MB in all.

The pipeline installs a shipped model into a run folder when the job's config key matches
(``drkd-viz pipeline --no-shipped`` trains it instead), and evaluates it on the test split like
any other run. Regenerate a file only when the generator or the architecture changes: git keeps
every version.

    python -m drkd_viz.experiments.shipped RUN_DIR --name demo-teacher --command "…"   # ship a finished run
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from drkd_viz.data.synthetic import GENERATOR_VERSION
from drkd_viz.engine.config import DataConfig, dump_config, load_config
from drkd_viz.engine.data import open_split
from drkd_viz.engine.inference import evaluate_model, torchvision_snippet
from drkd_viz.errors import UserError
from drkd_viz.models.factory import DetectorConfig, build_detector
from drkd_viz.models.weights import read_safetensors
from drkd_viz.runs import RunFolder, environment_info, now
from drkd_viz.shipped import (  # the index (a leaf module); installing and shipping live here
    CHECK_IMAGES,
    MAX_SHIPPED_BYTES,
    SHIPPED_DIR,
    ShippedModel,
    sha256_of,
    shipped_models,
)
from drkd_viz.utils.io import atomic_write, atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from drkd_viz.engine.config import DataConfig, RunConfig


def load_shipped_state(model: ShippedModel, folder: Path = SHIPPED_DIR) -> dict[str, torch.Tensor]:
    """The shipped weights in fp32, after checking the file's sha256 against the manifest."""

    path = model.path(folder)
    if not path.is_file():
        raise UserError(f"shipped weights {path} are missing; reinstall the package or run with --no-shipped")
    if sha256_of(path) != model.sha256:
        raise UserError(f"shipped weights {path} do not match their sha256 in the manifest; the file is damaged")
    return {k: v.float() if v.is_floating_point() else v for k, v in read_safetensors(path).items()}


def install(model: ShippedModel, run_dir: Path, cfg: RunConfig, folder: Path = SHIPPED_DIR) -> None:
    """Write a finished run folder (config, export, manifest) holding the shipped model; ``cfg`` is the
    pipeline job's config (its paths point into this runs folder)."""
    from safetensors.torch import save

    state = load_shipped_state(model, folder)
    run = RunFolder(run_dir)
    run.export.mkdir(parents=True, exist_ok=True)
    num_classes = model.student_json["detector"]["num_classes"]
    atomic_write_text(run.config, dump_config(replace(cfg, model=replace(cfg.model, num_classes=num_classes))))
    atomic_write(run.export_weights, lambda fh: fh.write(save(state)))
    atomic_write_json(run.export_info, model.student_json)
    atomic_write_text(
        run.export_builder,
        "# Builds the exported student with torchvision only.\n"
        "# Then: model.load_state_dict(safetensors.torch.load_file('student.safetensors'))\n"
        + torchvision_snippet(DetectorConfig(**model.student_json["detector"])),
    )
    run.update_manifest(
        name=model.name,
        status="finished",
        seed=model.seed,
        started=now(),
        finished=now(),
        wall_seconds=0.0,
        environment=environment_info(),
        shipped={"file": model.file, "sha256": model.sha256, "command": model.command},
        metrics=None,
    )


def _evaluate_state(
    detector: dict, state: dict[str, torch.Tensor], data: DataConfig, split: str, max_images: int | None
) -> dict:
    import tempfile

    model = build_detector(DetectorConfig(**detector))
    model.load_state_dict(state)
    dataset = open_split(replace(data, max_eval_images=max_images), split, train=False)
    with tempfile.TemporaryDirectory() as tmp:
        result = evaluate_model(model, dataset, Path(tmp), torch.device("cpu"), 8, progress=False)
    return {k: result.stats[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}


def check_metrics(model: ShippedModel, data_root: Path, folder: Path = SHIPPED_DIR) -> dict:
    """The shipped model's metrics on the first ``model.check['images']`` test images of the embedded
    dataset in ``data_root``."""

    state = load_shipped_state(model, folder)
    data = DataConfig(root=str(data_root))
    return _evaluate_state(model.student_json["detector"], state, data, "test", model.check["images"])


def ship(run_dir: Path, name: str, config_key: str, command: str, folder: Path = SHIPPED_DIR) -> ShippedModel:
    """Add (or replace) ``name`` in the manifest: the run's exported weights as fp16, with their metrics
    measured on those fp16 weights."""
    from safetensors.torch import save

    run_dir = Path(run_dir)
    run = RunFolder(run_dir)
    state = read_safetensors(run.export_weights)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    folder.mkdir(parents=True, exist_ok=True)
    file = f"{name}.safetensors"
    atomic_write(folder / file, lambda fh: fh.write(save(half)))
    rounded = {k: v.float() if v.is_floating_point() else v for k, v in half.items()}
    student_json = json.loads(run.export_info.read_text())
    data = load_config(run.config).data
    detector = student_json["detector"]
    entry = ShippedModel(
        name=name,
        file=file,
        sha256=sha256_of(folder / file),
        bytes=(folder / file).stat().st_size,
        dtype="float16",
        config_key=config_key,
        seed=int(run.read_manifest().get("seed", 0)),
        generator_version=GENERATOR_VERSION,
        # paths relative to the runs folder, as in the pipeline's config key
        config_yaml=run.config.read_text().replace(str(run_dir.resolve().parent), "<RUNS>"),
        student_json=student_json,
        command=command,
        metrics={"test": _evaluate_state(detector, rounded, data, "test", None)},
        check={"images": CHECK_IMAGES, "metrics": _evaluate_state(detector, rounded, data, "test", CHECK_IMAGES)},
    )
    others = [m for m in shipped_models(folder) if m.name != name]
    total = sum(m.bytes for m in others) + entry.bytes
    if total > MAX_SHIPPED_BYTES:
        (folder / file).unlink()
        raise UserError(
            f"shipped files would take {total / 2**20:.1f} MB; the limit is {MAX_SHIPPED_BYTES / 2**20:.0f} MB"
        )
    atomic_write_json(folder / "manifest.json", {"models": [asdict(m) for m in [*others, entry]]})
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Ship a finished pipeline run's weights inside the package (fp16).")
    parser.add_argument("run", type=Path, help="a finished run folder written by drkd-viz pipeline")
    parser.add_argument("--name", required=True)
    parser.add_argument("--command", required=True, help="the command that rebuilds the run")
    args = parser.parse_args(argv)

    key = RunFolder(args.run).marked_key()
    if key is None:
        raise SystemExit(f"{args.run} has no pipeline.json: ship a run that drkd-viz pipeline trained")
    entry = ship(args.run, args.name, key, args.command)
    print(f"shipped {entry.file}: {entry.bytes / 2**20:.1f} MB, test AP {entry.metrics['test']['AP']:.3f}")


if __name__ == "__main__":
    main()
