"""report.md, the tables a person reads, section by section: accuracy and the gains over the baseline, relations,
cost, the bar, per-class AP, where AP50 goes, the runs, and the variants tried on val."""

from __future__ import annotations

import math
from typing import Any

from drkd_viz.experiments.relation_report import relation_lines
from drkd_viz.experiments.report.collect import REPORTED, speed_ratio
from drkd_viz.runs.reports import training_seconds


def markdown(report: dict) -> str:
    """report.md of ``report`` (report.json's dict), its sections in reading order."""
    models, costs = report["models"], report["costs"]
    lines = _header_lines(report)
    lines += _accuracy_lines(models)
    lines += _gain_lines(models)
    lines += relation_lines(report)
    lines += _cost_lines(costs)
    lines += _bar_lines(report)
    lines += _per_class_lines(models)
    lines += error_lines(report)
    lines += _run_lines(models, costs)
    if report.get("val_variants"):
        lines += val_appendix(report["val_variants"])
    lines.append("")
    return "\n".join(lines)


def _header_lines(report: dict) -> list[str]:
    """The title and the sentence that says what was measured on what."""
    data = report.get("data")
    where = f"`{data['annotations']}`" if data else f"the embedded `{report['dataset']}` dataset"
    return [
        f"# drkd_viz experiments report — preset `{report['preset']}`",
        "",
        f"{report.get('split', 'test').capitalize()} split of {where}, {report['family']}. Seeds {report['seeds']}. "
        f"Commit `{report['provenance']['git'].get('commit')}`"
        f"{' (with local changes)' if report['provenance']['git'].get('dirty') else ''}. "
        f"{wall_time_sentence(report)} AP in percent (COCO box AP × 100); "
        "mean ± standard deviation over seeds.",
    ]


def _accuracy_lines(models: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Accuracy",
        "",
        "| model | seeds | " + " | ".join(REPORTED) + " |",
        "|---|---|" + "---|" * len(REPORTED),
    ]
    for method, entry in models.items():
        lines.append(
            f"| {method} | {len(entry['seeds'])} | " + " | ".join(_fmt(entry["summary"][k]) for k in REPORTED) + " |"
        )
    return lines


def _gain_lines(models: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Gains over the baseline student (paired by seed; 95 % interval of the mean gain)",
        "",
        "| model | ΔAP | 95 % CI | ΔAP_S | 95 % CI | gap closed (AP) | gap closed (AP_S) |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, entry in models.items():
        if "gain_over_baseline" not in entry:
            continue
        g = entry["gain_over_baseline"]
        closed = entry["gap_closed"]
        lines.append(
            f"| {method} | {g['AP']['mean'] * 100:+.1f} | {_ci(g['AP'])} | {g['APs']['mean'] * 100:+.1f} | "
            f"{_ci(g['APs'])} | {_pct(closed['AP'])} | {_pct(closed['APs'])} |"
        )
    return lines


def _cost_lines(costs: dict[str, Any]) -> list[str]:
    """The cost table, and how many times faster the student runs than the teacher."""
    lines = [
        "",
        "## Cost (CPU, batch 1, real test images, measured in this run)",
        "",
        "| model | parameters | GFLOPs / image | images / s | images / s, 1 thread |",
        "|---|---|---|---|---|",
    ]
    for role, cost in costs.items():
        speed, one = cost.get("cpu_images_per_s"), cost.get("cpu_images_per_s_1thread")
        lines.append(
            f"| {role} | {cost['parameters'] / 1e6:.2f} M | {cost['gflops_per_image']:.2f} | "
            f"{'not timed' if speed is None else f'{speed:.1f}'} | {'–' if one is None else f'{one:.1f}'} |"
        )
    ratio, ratio_one = speed_ratio(costs), speed_ratio(costs, "cpu_images_per_s_1thread")
    if ratio is not None:
        threads = costs["teacher"].get("threads")
        lines.append(
            f"\nThe student runs {ratio:.2f}× faster than the teacher on this CPU"
            + (f" with {threads} threads" if threads else "")
            + ("" if ratio_one is None else f", {ratio_one:.2f}× with one thread")
            + "."
        )
    return lines


def _bar_lines(report: dict) -> list[str]:
    """The scientific bar's checks, when the report has them."""
    if not report.get("scientific_bar"):
        return []
    lines = [
        "",
        "## The bar, checked on these numbers (models worth looking at, speed, distillation)",
        "",
        "| criterion | measured | holds |",
        "|---|---|---|",
    ]
    verdict = {True: "yes", False: "**no**", None: "n/a"}
    for c in report["scientific_bar"]:
        lines.append(f"| {c['criterion']} | {c['measured']} | {verdict[c['passed']]} |")
    if len(report.get("seeds", [])) < 2:
        lines += [
            "",
            "With one seed there are no intervals, so the bar's interval lines are left out (the `study` "
            "preset checks them over five paired seeds).",
        ]
    return lines


def _per_class_lines(models: dict[str, Any]) -> list[str]:
    names = list(next(iter(models.values()))["per_class"])
    lines = [
        "",
        "## Per-class AP (mean over seeds)",
        "",
        "| model | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for method, entry in models.items():
        lines.append(
            f"| {method} | "
            + " | ".join("–" if entry["per_class"][n] is None else f"{entry['per_class'][n] * 100:.1f}" for n in names)
            + " |"
        )
    return lines


def _run_lines(models: dict[str, Any], costs: dict[str, Any]) -> list[str]:
    """Each model's runs and their wall time, then the figures."""
    lines = ["", "## Runs", "", "| model | runs | wall time (min) |", "|---|---|---|"]
    for method, entry in models.items():
        wall = "shipped with the package" if entry.get("shipped") else f"{entry['wall_seconds'] / 60:.1f}"
        lines.append(f"| {method} | {', '.join(entry['runs'])} | {wall} |")
    lines += [
        "",
        "Figures: ![AP by size](ap_by_size.png) ![per-class AP](per_class.png)"
        + (" ![speed vs AP](speed_vs_ap.png)" if speed_ratio(costs) is not None else ""),
    ]
    return lines


def error_lines(report: dict) -> list[str]:
    """The error breakdown table of report.md: AP50 lost to each TIDE error type, all objects and small ones,
    and each student's difference to the baseline (paired by seed)."""
    errors = report.get("errors")
    if not errors:
        return []
    kinds = [*errors["types"], "false_positives", "false_negatives"]
    titles = ["cls", "loc", "both", "dupe", "bkg", "miss", "all FP", "all FN"]
    lines = [
        "",
        "## Where AP50 goes (TIDE error types, IoU 0.5; AP points a fix gives back, mean over seeds)",
        "",
        "| model | size | AP50 | " + " | ".join(titles) + " |",
        "|---|---|---|" + "---|" * len(titles),
    ]
    for model, sizes in errors["models"].items():
        for size in ("all", "small"):
            cell = sizes.get(size)
            if cell is None or cell["ap50"] is None:
                continue
            values = " | ".join(_points(cell[k]["recovered"]) for k in kinds)
            lines.append(f"| {model} | {size} | {cell['ap50'] * 100:.1f} | {values} |")
    if errors.get("vs_baseline"):
        lines += [
            "",
            "Student − baseline, AP50 points lost to each type (< 0: the student loses less; paired by seed, "
            "95 % interval when there are several seeds):",
            "",
            "| model | size | " + " | ".join(titles) + " |",
            "|---|---|" + "---|" * len(titles),
        ]
        for model, sizes in errors["vs_baseline"].items():
            for size in ("all", "small"):
                if size not in sizes:
                    continue
                cells = []
                for k in kinds:
                    gain = sizes[size].get(k)
                    low, high = gain["ci95"] if gain else (None, None)
                    text = "–" if not gain or gain["mean"] is None else f"{gain['mean'] * 100:+.2f}"
                    if low is not None and high is not None:
                        text += f" [{low * 100:+.1f}, {high * 100:+.1f}]"
                    cells.append(text)
                lines.append(f"| {model} | {size} | " + " | ".join(cells) + " |")
    return lines


def _points(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.2f}"


def wall_time_sentence(report: dict) -> str:
    """The pipeline's wall time, and when it reused runs, what training them had cost."""
    text = f"Pipeline wall time {report['wall_seconds'] / 60:.1f} min"
    statuses = [r.get("status") for r in report.get("provenance", {}).get("runs", {}).values()]
    reused = sum(status == "cached" for status in statuses)
    if reused:
        text += (
            f" ({reused} of {len(statuses)} runs reused from earlier invocations; training all of them took "
            f"{training_seconds(report) / 60:.1f} min)"
        )
    return text + "."


def val_appendix(rows: list[dict[str, Any]]) -> list[str]:
    """The report's appendix: every variant tried on val, the ones that lost included."""
    lines = [
        "",
        "## Appendix: every variant tried on val before this study",
        "",
        "Chosen on `val`, never on `test`: one row per run of `scripts/probe_student.py`, which reruns "
        "any of them (`--only NAME`). Overrides are relative to the demo job the variant starts from; a "
        "commit marked + ran with local changes beside it.",
        "",
        "| variant | starts from | overrides | seed | iterations | val AP | val AP_S | commit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        overrides = ", ".join(f"`{o}`" for o in row["overrides"]) or "–"
        measured_on = (row.get("commit") or row.get("source") or "?")[:7]  # rows from before the record: "README"
        measured_on += "+" if row.get("local_changes") else ""
        lines.append(
            f"| {row['name']} | {row['starts_from']} | {overrides} | {row['seed']} | {row['iterations']} | "
            f"{row['val']['AP'] * 100:.1f} | {row['val']['APs'] * 100:.1f} | {measured_on} |"
        )
    return lines


def _fmt(summary: dict, scale: float = 100.0) -> str:
    mean = summary["mean"] * scale
    if summary["n"] > 1 and summary["ci95"][0] is not None:
        return f"{mean:.1f} ± {summary['std'] * scale:.1f}"
    return f"{mean:.1f}"


def _ci(summary: dict, scale: float = 100.0) -> str:
    low, high = summary["ci95"]
    return "n/a (1 seed)" if low is None else f"[{low * scale:+.1f}, {high * scale:+.1f}]"


def _pct(value: float | None) -> str:
    return "n/a (no teacher lead)" if value is None or math.isnan(value) else f"{value * 100:.0f} %"
