"""Short what-if runs for exploring ablations (notebook 04, the dashboard): a student variant of a
pipeline preset — different loss terms, weights, filter, target, levels or budget — trained against
that preset's teacher and evaluated on ``val`` (exploring is tuning; ``test`` stays for the report).

    result = train_variant("runs/demo", "demo", Variant(method="drkd", ir_weight=0.0, iterations=60))

Variants are cached like pipeline runs, by the hash of their resolved config, in
``RUNS/variants/<name>-<hash>/``: asking again for the same variant costs nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drkd_viz.distill.config import formula
from drkd_viz.engine.config import RunConfig, load_config, merge_sections
from drkd_viz.engine.runs import RunFolder
from drkd_viz.errors import UserError
from drkd_viz.experiments.pipeline import PRESETS, ensure_pretrained, plan, student_key
from drkd_viz.utils.io import atomic_write_json

VARIANT_METHODS = ("baseline", "feature_imitation", "pkd", "drkd")
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
    relation_filter: str | None = None  # learned | none | reference
    ir_target: str | None = None  # features | matrix
    pr_levels: list[str] | None = None
    ir_levels: list[str] | None = None
    weight_schedule: str | None = None  # constant | cosine

    def name(self) -> str:
        budget = f"-it{self.iterations}" if self.iterations else ""
        return f"{self.method}{budget}-s{self.seed}"


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
    from drkd_viz.engine.inference import evaluate_run
    from drkd_viz.engine.trainer import train

    runs = Path(runs).resolve()
    cfg = variant_config(runs, preset, variant)
    jobs = plan(PRESETS[preset], runs)
    key = student_key(cfg, runs, jobs[0].key)
    folder = runs / "variants" / f"{variant.name()}-{key[:10]}"
    metrics_file = folder / "eval" / "val" / "metrics.json"
    manifest = RunFolder(folder).read_manifest() if folder.exists() else {}
    cached = manifest.get("status") == "finished" and metrics_file.is_file()
    if not cached:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / "pipeline.json", {"config_key": key, "method": variant.method, "seed": variant.seed})
        if manifest.get("status") != "finished":
            ensure_pretrained([next(j for j in jobs if j.method == "baseline")], quiet)  # the students' backbone
            manifest = train(cfg, folder, resume=(folder / "config.yaml").is_file(), quiet=quiet)
        if not metrics_file.is_file():
            evaluate_run(folder, split="val", progress=not quiet)
        manifest = RunFolder(folder).read_manifest()
    return {
        "name": variant.name(),
        "folder": folder,
        "metrics": json.loads(metrics_file.read_text()),
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
    folders = sorted(p.parent.parent.parent for p in runs.glob("*/eval/val/metrics.json"))
    folders += sorted(p.parent.parent.parent for p in runs.glob("variants/*/eval/val/metrics.json"))
    for folder in folders:
        name = folder.name if folder.parent == runs else f"variants/{folder.name}"
        if names is not None and name not in names:
            continue
        metrics = json.loads((folder / "eval" / "val" / "metrics.json").read_text())
        rows.append(
            {
                "run": name,
                "iterations": load_config(folder / "config.yaml").train.iterations,
                **{k: 100 * metrics[k] for k in SHOWN},
            }
        )
    return pd.DataFrame(rows, columns=["run", "iterations", *SHOWN])


def ablation_table(report: dict[str, Any]):
    """The report's students as a DataFrame: AP metrics (percent, mean over seeds), the gain over the
    baseline with its 95 % interval, and the number of seeds."""
    import pandas as pd

    rows = []
    for method, entry in report["models"].items():
        row: dict[str, Any] = {"model": method, "seeds": len(entry["seeds"])}
        row.update({k: 100 * entry["summary"][k]["mean"] for k in SHOWN})
        gain = entry.get("gain_over_baseline")
        for k in ("AP", "APs"):
            if gain:
                low, high = gain[k]["ci95"]
                row[f"Δ{k}"] = 100 * gain[k]["mean"]
                row[f"Δ{k} CI low"] = None if low is None else 100 * low
                row[f"Δ{k} CI high"] = None if high is None else 100 * high
        rows.append(row)
    return pd.DataFrame(rows)
