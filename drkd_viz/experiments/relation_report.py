"""The report's relation section and the controlled study's bar (issue "relations that carry knowledge").

``relations`` in report.json: for each model and seed, the parameter-free instance relation of its own features
over the report's split (``analysis.relation_metrics``): the class-structure AUC per level and the agreement with
the teacher's rows (row L1, Spearman) per level and object size.

The bar below was written before the controlled study ran (study preset, 5 seeds paired, test split):

* the teacher-side instance-relation target separates same-class pairs with AUC ≥ 0.75 at the finest level;
* relation only (no imitation of any kind) beats the baseline by ≥ +2.0 AP, 95 % interval above 0;
* under the rotation control relation only keeps ≥ 50 % of that gain, and feature imitation loses ≥ 50 % of its own;
* DRKD minus the best imitation (feature imitation or PKD) is ≥ +1.0 AP and ≥ +1.0 AP_S, each interval above 0;
* DRKD's relation rows are closer to the teacher's (row L1, finest level, all sizes) than feature imitation's, on
  every seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drkd_viz.analysis.relation_metrics import relation_metrics
from drkd_viz.distill.config import CONTROLS
from drkd_viz.engine.inference import load_student
from drkd_viz.utils.stats import paired_difference, summarize

RELATION_IMAGES = 80  # test images with >= 3 instances the relation metrics are measured on
SIZES = ("small", "medium", "large", "all")


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None and v == v]  # NaN != NaN
    return sum(values) / len(values) if values else None


def relation_section(jobs: list, dataset: Any, levels: list[str], progress: bool = False) -> dict[str, Any]:
    """The relation metrics of every run of ``jobs`` (teacher, students over seeds) on ``dataset``, by model: AUC per
    level and agreement per level and size, each per seed and averaged."""

    teacher_job = next(j for j in jobs if j.method == "teacher")
    teacher, _ = load_student(teacher_job.folder, "cpu")
    per_seed: dict[int, dict[str, Any]] = {}
    for job in jobs:
        if job.method != "teacher":
            per_seed.setdefault(job.seed, {})[job.method] = job.folder
    auc: dict[str, dict[str, dict[str, float | None]]] = {}
    agreement: dict[str, dict[str, dict[str, dict[str, dict[str, float | None]]]]] = {}
    images = 0
    for seed, folders in sorted(per_seed.items()):
        models = {"teacher": teacher, **{m: load_student(f, "cpu")[0] for m, f in folders.items()}}
        metrics = relation_metrics(models, dataset, levels, RELATION_IMAGES, progress=progress)
        images = metrics.images
        for row in metrics.auc.itertuples():
            # the teacher is the same model on every seed: measured once per seed, identical
            auc.setdefault(row.role, {}).setdefault(row.level, {})[str(seed)] = row.auc
        for row in metrics.agreement.itertuples():
            cell = agreement.setdefault(row.role, {}).setdefault(row.level, {}).setdefault(row.size, {})
            cell.setdefault("row_l1", {})[str(seed)] = row.row_l1
            cell.setdefault("spearman", {})[str(seed)] = None if row.spearman != row.spearman else row.spearman
    return {
        "levels": list(levels),
        "images": images,
        "temperature": 0.1,
        "auc": {
            m: {lv: {"per_seed": v, "mean": _mean(list(v.values()))} for lv, v in x.items()} for m, x in auc.items()
        },
        "agreement": {
            m: {
                lv: {
                    size: {k: {"per_seed": v, "mean": _mean(list(v.values()))} for k, v in cell.items()}
                    for size, cell in sizes.items()
                }
                for lv, sizes in x.items()
            }
            for m, x in agreement.items()
        },
    }


def relation_lines(report: dict[str, Any]) -> list[str]:
    """The relation section of report.md."""
    rel = report.get("relations")
    if not rel:
        return []
    levels, first = rel["levels"], rel["levels"][0]

    def fmt(value: float | None, digits: int = 2) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [
        "",
        "## Instance relations (the same parameter-free relation of each model's own features)",
        "",
        f"Over the first {rel['images']} test images with at least 3 instances: every model's FPN feature pooled over "
        f"the ground-truth instances, related by softmax over the other instances of cos / τ (τ {rel['temperature']}). "
        "**AUC**: how well the relation ranks same-class pairs above other pairs (0.5: no class information). "
        f"**Row L1** (0–2) and **Spearman ρ**: each instance's row against the teacher's at {first}, by object size "
        "(lower L1, higher ρ: relations closer to the teacher's). Means over seeds.",
        "",
        "| model | "
        + " | ".join(f"AUC {lv}" for lv in levels)
        + " | "
        + " | ".join(f"row L1 {s}" for s in SIZES)
        + f" | ρ all ({first}) |",
        "|---|" + "---|" * (len(levels) + len(SIZES) + 1),
    ]
    for model, by_level in rel["auc"].items():
        agree = rel["agreement"].get(model, {}).get(first, {})
        l1 = [fmt(agree.get(s, {}).get("row_l1", {}).get("mean")) for s in SIZES]
        rho = fmt(agree.get("all", {}).get("spearman", {}).get("mean"))
        aucs = [fmt(by_level.get(lv, {}).get("mean")) for lv in levels]
        lines.append(
            f"| {model} | " + " | ".join(aucs) + " | " + " | ".join(l1) + f" | {'–' if model == 'teacher' else rho} |"
        )
    return lines


def relation_bar(
    models: dict[str, Any],
    relations: dict[str, Any] | None,
    check: Callable[[str, str, bool | None], None],
    check_interval: Callable[[str, dict[str, Any]], None],
) -> None:
    """The controlled study's bar (module docstring), checked on the report's numbers through ``check``."""
    if relations:
        first = relations["levels"][0]
        value = relations["auc"].get("teacher", {}).get(first, {}).get("mean")
        if value is not None:
            check(
                f"teacher's instance-relation target: same-class AUC at {first} ≥ 0.75", f"{value:.2f}", value >= 0.75
            )
    gain = {m: e["gain_over_baseline"] for m, e in models.items() if "gain_over_baseline" in e}
    if "relation" in gain:
        g = gain["relation"]["AP"]
        check("relation only AP ≥ baseline + 2.0 points", f"{g['mean'] * 100:+.1f}", g["mean"] >= 0.02)
        check_interval("95 % interval of the relation-only AP gain above 0", g)
    for rotated, plain, kept, label in (
        ("relation_rotate", "relation", True, "relation only keeps ≥ 50 % of its gain under rotation"),
        ("fi_rotate", "feature_imitation", False, "feature imitation loses ≥ 50 % of its gain under rotation"),
    ):
        if rotated in gain and plain in gain and gain[plain]["AP"]["mean"] > 0:
            share = gain[rotated]["AP"]["mean"] / gain[plain]["AP"]["mean"]
            check(label, f"{share * 100:.0f} % kept", share >= 0.5 if kept else share <= 0.5)
    drkd = models.get("drkd")
    imitations = {m: models[m] for m in ("feature_imitation", "pkd") if m in models}
    if drkd and imitations:
        best = max(imitations, key=lambda m: imitations[m]["summary"]["AP"]["mean"])
        seeds = [s for s in drkd["per_seed"] if s in imitations[best]["per_seed"]]
        for key in ("AP", "APs"):
            diff = paired_difference(
                [drkd["per_seed"][s][key] for s in seeds], [imitations[best]["per_seed"][s][key] for s in seeds]
            ).to_json()
            check(
                f"DRKD {key} ≥ best imitation ({best}) {key} + 1.0 points",
                f"{diff['mean'] * 100:+.1f}",
                diff["mean"] >= 0.01,
            )
            check_interval(f"95 % interval of DRKD {key} − {best} {key} above 0", diff)
    if relations and drkd and "feature_imitation" in models:
        first = relations["levels"][0]
        l1 = {
            m: relations["agreement"].get(m, {}).get(first, {}).get("all", {}).get("row_l1", {}).get("per_seed", {})
            for m in ("drkd", "feature_imitation")
        }
        seeds = sorted(set(l1["drkd"]) & set(l1["feature_imitation"]))
        if seeds:
            closer = [l1["drkd"][s] < l1["feature_imitation"][s] for s in seeds]
            check(
                f"DRKD's relation rows closer to the teacher's than feature imitation's (row L1, {first}), every seed",
                f"{sum(closer)} of {len(seeds)} seeds",
                all(closer),
            )


def relation_table(report: dict[str, Any]):
    """The report's relation metrics as one row per model: AUC per level, and at the finest level the row L1 to the
    teacher by size and Spearman's ρ over all rows (means over seeds); None when the report has none."""
    import pandas as pd

    rel = report.get("relations")
    if not rel:
        return None
    levels, first = rel["levels"], rel["levels"][0]
    rows = []
    for model, by_level in rel["auc"].items():
        agree = rel["agreement"].get(model, {}).get(first, {})
        row = {"model": model, **{f"AUC {lv}": by_level.get(lv, {}).get("mean") for lv in levels}}
        row.update({f"row L1 {s} ({first})": agree.get(s, {}).get("row_l1", {}).get("mean") for s in SIZES})
        row[f"ρ all ({first})"] = agree.get("all", {}).get("spearman", {}).get("mean")
        rows.append(row)
    return pd.DataFrame(rows)


# what each arm of the controlled study keeps of the teacher's knowledge (the lesson chart's colours)
CONTROL_ARMS: dict[str, tuple[str, str]] = {
    "feature_imitation": ("feature imitation", "imitation"),
    "pkd": ("PKD", "imitation"),
    "drkd": ("DRKD (imitation + relations)", "both"),
    "relation": ("relation only", "relations"),
    "relation_rotate": ("relation only, teacher rotated", "relations"),
    "fi_rotate": ("feature imitation, teacher rotated", "neither"),
    "relation_shuffle": ("relation only, targets shuffled", "neither"),
}


def controls_frame(report: dict[str, Any]):
    """The controlled study's arms present in ``report``: one row per (arm, metric AP / APs) with the gain over the
    baseline paired by seed and its 95 % interval (``arm``, ``model``, ``keeps``, ``metric``, ``gain``, ``ci_low``,
    ``ci_high``, ``seeds``), in points; empty when the report has no control arm (relation only, rotation,
    shuffling: without them the imitation and DRKD bars alone answer nothing)."""
    import pandas as pd

    columns = ["arm", "model", "keeps", "metric", "gain", "ci_low", "ci_high", "seeds"]
    if not any(arm in report.get("models", {}) for arm in CONTROLS):
        return pd.DataFrame(columns=columns)
    rows = []
    for model, (arm, keeps) in CONTROL_ARMS.items():
        entry = report.get("models", {}).get(model, {})
        for metric in ("AP", "APs"):
            gain = entry.get("gain_over_baseline", {}).get(metric)
            if gain is None:
                continue
            low, high = gain.get("ci95") or (None, None)
            rows.append(
                {
                    "arm": arm,
                    "model": model,
                    "keeps": keeps,
                    "metric": metric,
                    "gain": 100 * gain["mean"],
                    "ci_low": None if low is None else 100 * low,
                    "ci_high": None if high is None else 100 * high,
                    "seeds": gain.get("n", 1),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def controls_sentence(report: dict[str, Any]) -> str | None:
    """One sentence that reads the controls chart: what relation only gains, what rotation leaves of it and of
    feature imitation's gain, and what shuffling does; None without the relation-only arm and a baseline."""
    frame = controls_frame(report)
    ap = frame[frame["metric"] == "AP"].set_index("model")["gain"] if len(frame) else None
    if ap is None or "relation" not in ap:
        return None
    parts = [f"Relations alone gain {ap['relation']:+.1f} AP over the baseline"]
    if "relation_rotate" in ap:
        parts.append(f"{ap['relation_rotate']:+.1f} with the teacher's features rotated (imitation made impossible)")
    if "feature_imitation" in ap and "fi_rotate" in ap:
        parts.append(
            f"while feature imitation falls from {ap['feature_imitation']:+.1f} to {ap['fi_rotate']:+.1f} under the "
            "same rotation"
        )
    text = "; ".join(parts[:2]) + (f", {parts[2]}" if len(parts) > 2 else "") + "."
    if "relation_shuffle" in ap:
        shuffled = ap["relation_shuffle"]
        if shuffled >= 0.5 * ap["relation"]:
            reading = "as much as the real targets: a regulariser, not knowledge"
        elif shuffled < 0:
            reading = (
                "worse than no distillation at all: what the targets say carries the gain, and a wrong target harms"
            )
        else:
            reading = "what the targets say carries the gain, not a regularising side effect"
        text += f" Shuffled relation targets give {shuffled:+.1f}: {reading}."
    seeds = int(frame["seeds"].max())
    return text + f" ({seeds} seed{'s' if seeds != 1 else ''}, paired with the baseline's.)"


def relation_metric_frame(report: dict[str, Any]):
    """The report's relation metrics, long: one row per (metric, model, level, size) with ``mean`` over seeds and its
    95 % interval (``ci_low``, ``ci_high``; None with one seed), ``seeds``. ``auc`` is per level (size "all"),
    ``row_l1`` per size at the finest level. Empty when the report has none."""
    import pandas as pd

    rel = report.get("relations") or {}
    rows = []

    def add(metric: str, model: str, level: str, size: str, per_seed: dict[str, float | None]) -> None:
        values = [v for v in per_seed.values() if v is not None and v == v]
        if not values:
            return
        s = summarize(values)
        ok = len(values) > 1
        rows.append(
            {
                "metric": metric,
                "model": model,
                "level": level,
                "size": size,
                "mean": s.mean,
                "ci_low": s.low if ok else None,
                "ci_high": s.high if ok else None,
                "seeds": len(values),
            }
        )

    if rel:
        first = rel["levels"][0]
        for model, by_level in rel["auc"].items():
            add("auc", model, first, "all", by_level.get(first, {}).get("per_seed", {}))
        for model, by_level in rel["agreement"].items():
            for size in SIZES:
                cell = by_level.get(first, {}).get(size, {})
                add("row_l1", model, first, size, cell.get("row_l1", {}).get("per_seed", {}))
    return pd.DataFrame(rows, columns=["metric", "model", "level", "size", "mean", "ci_low", "ci_high", "seeds"])


def agreement_sentence(report: dict[str, Any], size: str = "small") -> str | None:
    """A sentence that reads the agreement for the user: which of DRKD and feature imitation relates ``size``
    objects more like the teacher (row L1 at the finest level, means over seeds); None without both."""
    frame = relation_metric_frame(report)
    l1 = frame[(frame["metric"] == "row_l1") & (frame["size"] == size)].set_index("model")["mean"]
    if not {"drkd", "feature_imitation"} <= set(l1.index):
        return None
    drkd, fi = float(l1["drkd"]), float(l1["feature_imitation"])
    level = frame["level"].iloc[0]
    better = "better than" if drkd < fi else ("no better than" if drkd > fi else "as well as")
    return (
        f"The DRKD student's relations agree with the teacher's on {size} objects {better} feature imitation's "
        f"(row L1 at {level} {drkd:.2f} vs {fi:.2f}; lower is closer, 0–2)."
    )
