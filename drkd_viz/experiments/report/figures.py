"""The report's figures: AP by object size, per-class AP, accuracy against CPU speed."""

from __future__ import annotations

from drkd_viz.utils.figures import figure_png, new_figure


def figures(report: dict) -> dict[str, bytes]:
    """The report's PNG figures by file name: AP by size with 95 % intervals, per-class AP and, when every model
    was timed, accuracy against CPU speed."""
    out = {}
    models, split = report["models"], report.get("split", "test")
    names = list(models)
    sizes = ("AP", "APs", "APm", "APl")
    fig = new_figure(8, 3.6)
    ax = fig.subplots()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        means = [models[name]["summary"][k]["mean"] * 100 for k in sizes]
        errs = [
            [
                (m - (models[name]["summary"][k]["ci95"][0] or models[name]["summary"][k]["mean"]) * 100)
                for m, k in zip(means, sizes, strict=True)
            ],
            [
                ((models[name]["summary"][k]["ci95"][1] or models[name]["summary"][k]["mean"]) * 100 - m)
                for m, k in zip(means, sizes, strict=True)
            ],
        ]
        ax.bar([x + i * width for x in range(len(sizes))], means, width, yerr=errs, capsize=2, label=name)
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(sizes))], ["all", "small", "medium", "large"])
    ax.set_ylabel("box AP (%)")
    ax.set_title(f"{split.capitalize()}-split AP by object size (error bars: 95 % interval over seeds)")
    ax.legend(fontsize=7, ncol=3)
    out["ap_by_size.png"] = figure_png(fig, dpi=110)

    classes = list(models[names[0]]["per_class"])
    fig = new_figure(8, 3.6)
    ax = fig.subplots()
    for i, name in enumerate(names):
        values = [(models[name]["per_class"][c] or 0) * 100 for c in classes]
        ax.bar([x + i * width for x in range(len(classes))], values, width, label=name)
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(classes))], classes, rotation=30)
    ax.set_ylabel("AP (%)")
    ax.set_title(f"Per-class {split} AP (mean over seeds)")
    ax.legend(fontsize=7, ncol=3)
    out["per_class.png"] = figure_png(fig, dpi=110)

    if all("cpu_images_per_s" in cost for cost in report["costs"].values()) and report["costs"]:
        fig = new_figure(5, 3.6)
        ax = fig.subplots()
        for name, entry in models.items():
            role = "teacher" if name == "teacher" else "student"
            speed = report["costs"][role]["cpu_images_per_s"]
            ax.scatter(speed, entry["summary"]["AP"]["mean"] * 100, label=name)
        ax.set_xlabel("CPU inference (images / s, batch 1)")
        ax.set_ylabel(f"{split} AP (%)")
        ax.set_title("Accuracy vs speed")
        ax.legend(fontsize=7)
        out["speed_vs_ap.png"] = figure_png(fig, dpi=110)
    return out
