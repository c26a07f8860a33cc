"""Short what-if runs for exploring ablations (notebook 04, the dashboard): a student variant of a
pipeline preset — different loss terms, weights, filter, target, levels or budget — trained against
that preset's teacher and evaluated on ``val`` (exploring is tuning; ``test`` stays for the report).

    result = train_variant("runs/demo", "demo", Variant(method="drkd", ir_weight=0.0, iterations=60))

Variants are cached like pipeline runs, by the hash of their resolved config, in
``RUNS/variants/<name>-<hash>/``: asking again for the same variant costs nothing.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drkd_viz.distill.config import METHOD_WEIGHTS, formula
from drkd_viz.engine.config import RunConfig, load_config, merge_sections
from drkd_viz.errors import UserError
from drkd_viz.experiments.pipeline import PRESETS, ensure_prepared, ensure_run, plan, student_key
from drkd_viz.runs import RunFolder, RunsRoot, run_name

VARIANT_METHODS = ("baseline", *METHOD_WEIGHTS)
SHOWN = ("AP", "AP50", "APs", "APm", "APl")


@dataclass
class Variant:
    """A student run; every ``None`` keeps the preset's (DRKD default) value."""

    method: str = "drkd"
    iterations: int | None = None  # None: the preset's student budget
    seed: int = 0
    pr_weight: float | None = None
    ir_weight: float | None = None
    ins_weight: float | None = None
    fi_weight: float | None = None
    pkd_weight: float | None = None
    ira_weight: float | None = None  # the anchored instance relation (methods drkd and relation)
    pa_weight: float | None = None  # the pixel affinity (methods drkd and relation)
    relation_filter: str | None = None  # learned | none | reference
    ir_target: str | None = None  # features | matrix
    pr_levels: list[str] | None = None
    ir_levels: list[str] | None = None
    weight_schedule: str | None = None  # constant | cosine
    rotate_teacher: bool | None = None  # the control that scrambles imitation targets and keeps relations
    shuffle_relations: bool | None = None  # the control that scrambles relation targets

    def name(self) -> str:
        budget = f"-it{self.iterations}" if self.iterations else ""
        return run_name(f"{self.method}{budget}", self.seed)


def variant_config(runs: str | os.PathLike, preset: str, variant: Variant) -> RunConfig:
    """The preset's student config with the variant's changes; the teacher is the preset's teacher."""
    if preset not in PRESETS:
        raise UserError(f"unknown pipeline preset {preset!r}; choose one of {sorted(PRESETS)}")
    if variant.method not in VARIANT_METHODS:
        raise UserError(f"variant method {variant.method!r}: choose one of {', '.join(VARIANT_METHODS)}")
    if variant.iterations is not None and variant.iterations < 1:
        raise UserError(f"iterations must be at least 1, got {variant.iterations}")
    runs = Path(runs).resolve()
    jobs = plan(PRESETS[preset], runs)
    teacher = jobs[0]
    if RunFolder(teacher.folder).read_manifest().get("status") != "finished":
        raise UserError(
            f"the {preset} teacher is not trained yet in {runs}; build it first with "
            f"`drkd-viz pipeline --preset {preset} --out {runs}`"
        )
    base = next(j for j in jobs if j.method == "baseline")
    raw = merge_sections(base.config.to_dict(), {"name": variant.name(), "seed": variant.seed})
    raw.pop("distill", None)
    if variant.iterations is not None:
        raw["train"]["iterations"] = variant.iterations
        raw["train"]["checkpoint_every"] = max(1, min(raw["train"]["checkpoint_every"], variant.iterations))
    if variant.method != "baseline":
        overrides = {
            k: v for k, v in asdict(variant).items() if k not in ("method", "iterations", "seed") and v is not None
        }
        raw["distill"] = {"method": variant.method, "teacher": str(teacher.folder), **overrides}
    return load_config(data=raw)


def train_variant(runs: str | os.PathLike, preset: str, variant: Variant, quiet: bool = False) -> dict[str, Any]:
    """Train (or reuse) a variant and evaluate it on ``val``. Returns name, folder, val metrics, whether it
    was cached, and the loss formula it minimised."""
    runs = Path(runs).resolve()
    cfg = variant_config(runs, preset, variant)
    jobs = plan(PRESETS[preset], runs)
    key = student_key(cfg, runs, jobs[0].key)
    folder = RunsRoot(runs).variants / f"{variant.name()}-{key[:10]}"
    baseline = next(j for j in jobs if j.method == "baseline")
    status = ensure_run(
        folder,
        cfg,
        key,
        variant.method,
        variant.seed,
        "val",
        quiet,
        prepare=lambda: ensure_prepared([baseline], quiet),  # the students' backbone
    )
    run = RunFolder(folder)
    manifest = run.read_manifest()
    cached = status == "cached"
    return {
        "name": variant.name(),
        "folder": folder,
        "metrics": run.read_eval_metrics("val"),
        "cached": cached,
        "formula": manifest.get("formula") or formula(cfg.distill),
        "variant": asdict(variant),
    }


def val_metrics(runs: str | os.PathLike, names: list[str] | None = None):
    """Val-split metrics of the runs in a runs folder (pipeline runs and variants) as a DataFrame, one row
    per run that has ``eval/val/metrics.json``; AP values in percent."""
    import pandas as pd

    runs = Path(runs)
    rows = []
    candidates = sorted(runs.glob("*/")) + sorted(RunsRoot(runs).variants.glob("*/"))
    folders = [folder for folder in candidates if RunFolder(folder).is_evaluated("val")]
    for folder in folders:
        name = folder.relative_to(runs).as_posix()
        if names is not None and name not in names:
            continue
        metrics = RunFolder(folder).read_eval_metrics("val")
        rows.append(
            {
                "run": name,
                "iterations": load_config(RunFolder(folder).config).train.iterations,
                **{k: 100 * metrics[k] for k in SHOWN},
            }
        )
    return pd.DataFrame(rows, columns=["run", "iterations", *SHOWN])
