"""The distillation diagnostics of a run over training (the dashboard's Runs page, notebook 04).

The trainer logs them every ``train.log_every`` iterations (drkd_viz/distill/diagnostics.py explains each);
this module groups a run's logged columns into panels and says how to read them.
"""

from __future__ import annotations

from collections.abc import Iterable

from matplotlib.figure import Figure

from drkd_viz.viz.common import new_figure

# panel title -> (column prefix, y-axis label)
DIAGNOSTIC_GROUPS: dict[str, tuple[str, str]] = {
    "gradient norm on the student": ("grad_loss_", "‖∇ term‖"),
    "cosine with ∇L_det": ("cos_loss_", "cosine"),
    "clip factor applied to the step": ("clip_factor", "factor"),
    "relation entropy / log N (t: teacher, s: student)": ("_entropy_", "ratio"),
    "teacher graph unit ‖BN(W_ext·Y)‖ / ‖x‖": ("t_residual_", "ratio"),
    "anchored relation: same-class AUC (t: target, s: student)": ("ira_auc_", "AUC"),
    "anchored relation: row L1 to the teacher's rows": ("ira_row_l1_", "L1 (0-2)"),
}

HOW_TO_READ = """\
**How to read the diagnostics** (logged every `train.log_every` iterations; a run without distillation logs
only ‖∇L_det‖ and its clip factor, the reference to read a distilled run against):
- **Gradient norm on the student**: ‖∇L_det‖ and the norm of each weighted distillation term's gradient on
  the student's weights. A term whose gradient is many times ∇L_det's steers the student away from
  detection; one far smaller does little.
- **Cosine with ∇L_det**: above 0 a term pushes the weights the way detection wants, below 0 it pulls
  against it, near 0 it changes features that detection does not use.
- **Clip factor**: 1 when the gradient clip did not act; below 1 the whole step, detection included, was
  shrunk, often because the distillation modules' gradients are large.
- **Relation entropy / log N**: 1 means every row of the teacher-side relation matrix is uniform, so the
  target says nothing about which instances relate; near 0 each instance relates to one other. The
  student-side line shows whether the student follows.
- **Teacher graph unit ‖BN(W_ext·Y)‖ / ‖x‖**: 0 means the teacher's graph unit passes its feature through
  and L_PR is plain feature imitation; large means the target is mostly the output of a unit that only the
  distillation loss has trained.
- **Anchored relation: same-class AUC** (runs with L_IRA): how well the teacher's relation target (t) and the
  student's own relation (s) rank pairs of instances of one class above other pairs, in the logged batch; 0.5
  means the relation holds no class information, 1 that every same-class pair relates more strongly.
- **Anchored relation: row L1**: how far the student's relation rows are from the teacher's (0: the same, 2: no
  overlap); it falls as the student takes on the teacher's relations.
"""


def diagnostic_groups(columns: Iterable[str]) -> dict[str, list[str]]:
    """The logged diagnostic columns of a run, by panel (panels without columns are left out)."""
    columns = list(columns)
    groups = {}
    for title, (marker, _) in DIAGNOSTIC_GROUPS.items():
        found = sorted(c for c in columns if (c.startswith(marker) if marker == "clip_factor" else marker in c))
        if title.startswith("gradient"):  # L_det first: the reference the others are read against
            found.sort(key=lambda c: c != "grad_loss_det")
        if found:
            groups[title] = found
    return groups


def plot_diagnostics(frame, smooth: int = 1, title: str = "") -> Figure:
    """One panel per group of :data:`DIAGNOSTIC_GROUPS`, one line per logged column; ``frame``: a run's
    metrics as a pandas DataFrame indexed by iteration (:func:`drkd_viz.analysis.training.read_metrics`)."""
    groups = diagnostic_groups(frame.columns)
    if not groups:
        fig = new_figure(6, 1.6)
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no diagnostics logged (runs with train.log_every > 0 log them)", ha="center")
        ax.set_axis_off()
        return fig
    columns = min(3, len(groups))
    rows = -(-len(groups) // columns)
    fig = new_figure(4.4 * columns, 3.0 * rows + 0.5)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, (group, names) in zip(axes.flat, groups.items(), strict=False):
        for i, name in enumerate(names):
            series = frame[name].dropna()
            if smooth > 1:
                series = series.rolling(smooth, min_periods=1).mean()
            label = name.removeprefix("grad_").removeprefix("cos_")
            ax.plot(series.index, series.values, label=label, color=f"C{i}", linewidth=1.2)
        if group.startswith("gradient"):
            ax.set_yscale("log")
        if group.startswith("cosine"):
            ax.axhline(0, color="black", linewidth=0.8)
        if "entropy" in group or group.startswith("clip"):
            ax.set_ylim(-0.02, 1.05)
        ax.set_title(group, fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel(DIAGNOSTIC_GROUPS[group][1])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2 if len(names) > 4 else 1)
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
