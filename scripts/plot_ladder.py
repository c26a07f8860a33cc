"""Plot the λ search of the distillation ladder from its record: val AP against each method's λ.

    python scripts/plot_ladder.py [--record configs/demo/val_ladder.json] [--out docs/images/ladder_lambda.png]

Reads the rows scripts/probe_student.py recorded on val (one machine's: rows copied from the README of an
earlier machine are left out). A row enters a method's curve when its overrides
set that method's λ (feature imitation, PKD, DRKD's L_PR with zero-initialised or the authors' graph units)
and nothing else but the seed. Seed-0 rows are joined by lines, seed-1 rows drawn as open markers, and the
baseline of each seed as a dashed line, so the figure shows where each curve turns down and how far a
second seed moves it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matplotlib.figure import Figure

REPO = Path(__file__).resolve().parents[1]
# curve -> (the λ key, the other overrides a row must have, exactly)
CURVES: dict[str, tuple[str, dict[str, str]]] = {
    "feature imitation": ("distill.fi_weight", {}),
    "PKD": (
        "distill.pkd_weight",
        {"distill.method": "pkd", "distill.pr_weight": "0.0175", "distill.glore_zero_init": "false"},
    ),
    "DRKD L_PR, zero-init units": ("distill.pr_weight", {"distill.glore_zero_init": "true"}),
    "DRKD L_PR, authors' init": ("distill.pr_weight", {"distill.glore_zero_init": "false"}),
}
BASELINE_LABEL = {"fontsize": 7, "color": "grey", "ha": "right", "va": "bottom"}


def curve_points(rows: list[dict], key: str, fixed: dict[str, str]) -> dict[int, list[tuple[float, float]]]:
    """seed -> sorted (λ, val AP %) of the rows that vary only ``key`` (and the seed) around ``fixed``."""
    points: dict[int, list[tuple[float, float]]] = {}
    for row in rows:
        overrides = dict(o.split("=", 1) for o in row["overrides"])
        overrides.pop("seed", None)
        if key not in overrides or {k: v for k, v in overrides.items() if k != key} != fixed:
            continue
        points.setdefault(row["seed"], []).append((float(overrides[key]), 100 * row["val"]["AP"]))
    return {seed: sorted(values) for seed, values in points.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, default=REPO / "configs" / "demo" / "val_ladder.json")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "ladder_lambda.png")
    args = parser.parse_args()
    # rows of the first machine (source: README) are left out: the same run differs by ~0.7 AP across machines
    rows = [
        r
        for r in json.loads(args.record.read_text())["variants"]
        if r.get("iterations") == 160 and r.get("source") != "README"
    ]
    fig = Figure(figsize=(7.5, 4.2), dpi=130)
    ax = fig.subplots()
    for index, (label, (key, fixed)) in enumerate(CURVES.items()):
        color = f"C{index}"
        for seed, values in curve_points(rows, key, fixed).items():
            xs, ys = zip(*values, strict=True)
            if seed == 0:
                ax.plot(xs, ys, "o-", color=color, label=label)
            else:
                ax.plot(xs, ys, "o", color=color, markerfacecolor="white", label=f"{label}, seed {seed}")
    baselines = {
        r["seed"]: 100 * r["val"]["AP"] for r in rows if r["name"] in ("demo-baseline-s0", "ladder-baseline-seed1")
    }
    for seed, value in sorted(baselines.items()):
        ax.axhline(value, color="grey", linestyle="--" if seed == 0 else ":", linewidth=1)
        ax.text(0.99, value, f"baseline, seed {seed}", transform=ax.get_yaxis_transform(), **BASELINE_LABEL)
    ax.set_xscale("log")
    ax.set_xlabel("λ of the method's distillation term (log scale)")
    ax.set_ylabel("val AP (%)")
    ax.set_title("The λ search on val (160 student iterations): where each curve turns down", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
