"""ipywidgets panels for the notebooks (the dashboard has its own Streamlit pages; the computations
behind both live in :mod:`drkd_viz.analysis` and :mod:`drkd_viz.experiments`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from drkd_viz.distill.config import DEFAULT, DEFAULT_WEIGHTS, PAPER_TERM_WEIGHTS
from drkd_viz.experiments.variants import Variant, train_variant, val_metrics

LEVELS_PR = ("P2", "P3", "P4", "P5", "P6")
LEVELS_IR = ("P2", "P3")
DRKD_WEIGHTS = DEFAULT_WEIGHTS["drkd"]
_STYLE = {"description_width": "150px"}  # room for the longest control description
# the loss terms' controls: (term, checkbox label, on by default, where its default λ comes from); each term is on
# when DRKD's default uses it, at its tuned λ (the paper's terms at theirs from the ladder)
_LOSS_TERMS = (
    ("fi", "L_FI: feature imitation", True, DRKD_WEIGHTS),
    ("pa", "L_PA: pixel affinity", True, DRKD_WEIGHTS),
    ("ira", "L_IRA: anchored instance relation", True, DRKD_WEIGHTS),
    ("pr", "L_PR: pixel relations (paper)", False, PAPER_TERM_WEIGHTS),
    ("ir", "L_IR: instance relations (paper)", False, PAPER_TERM_WEIGHTS),
    ("ins", "L_INS: instance features (paper)", False, PAPER_TERM_WEIGHTS),
)
# the panel's columns, left to right: method and DRKD's terms, the paper's terms, options, levels and budget
_PANEL_COLUMNS = (
    ("method", "use_fi", "fi_weight", "use_pa", "pa_weight", "use_ira", "ira_weight"),
    ("use_pr", "pr_weight", "use_ir", "ir_weight", "use_ins", "ins_weight"),
    ("relation_filter", "ir_target", "weight_schedule"),
    ("pr_levels", "ir_levels", "iterations", "seed"),
)


class AblationPanel:
    """Choose the loss terms (DRKD's: imitation and the anchored relations; the paper's: L_PR, L_IR, L_INS), weights,
    relation filter, L_IR target, levels and budget of a DRKD student;
    train it against the stored teacher with a live progress bar and compare it on ``val`` with the stored
    runs and the variants trained so far.

    ``panel.widget`` is what to display; ``panel.controls`` the individual widgets (tests set them);
    ``panel.train()`` does what the button does; ``panel.table`` holds the comparison as a DataFrame."""

    def __init__(self, runs: str | os.PathLike, preset: str, iterations: int = 60):
        import ipywidgets as w

        self.runs, self.preset = Path(runs), preset
        layout = w.Layout(width="420px")  # one layout object, shared by the sliders and dropdowns
        self.controls: dict[str, Any] = {
            "method": self._method_control(w),
            **self._loss_term_controls(w, layout),
            **self._option_controls(w, layout),
            **self._level_and_budget_controls(w, iterations),
        }
        self.button = w.Button(description="Train this student", button_style="primary", icon="play")
        self.button.on_click(lambda _: self.train())
        self.output = w.Output()
        self.results = w.Output()
        self.last: dict[str, Any] | None = None
        self.table = None
        self.widget = w.VBox(
            [
                w.HBox([w.VBox([self.controls[k] for k in column]) for column in _PANEL_COLUMNS]),
                self.button,
                self.output,
                self.results,
            ]
        )
        self.refresh()

    @staticmethod
    def _method_control(w: Any) -> Any:
        return w.ToggleButtons(
            options=[
                ("DRKD", "drkd"),
                ("relation only", "relation"),
                ("feature imitation", "feature_imitation"),
                ("PKD", "pkd"),
                ("baseline", "baseline"),
            ],
            value="drkd",
            description="method",
            style=_STYLE,
        )

    @staticmethod
    def _loss_term_controls(w: Any, layout: Any) -> dict[str, Any]:
        """A checkbox (``use_<term>``) and a λ slider (``<term>_weight``) per loss term, in ``_LOSS_TERMS`` order."""
        slider = dict(base=10, min=-3, max=1.5, step=0.1, style=_STYLE, layout=layout, readout_format=".3g")
        controls: dict[str, Any] = {}
        for term, label, on, weights in _LOSS_TERMS:
            controls[f"use_{term}"] = w.Checkbox(value=on, description=label, style=_STYLE)
            controls[f"{term}_weight"] = w.FloatLogSlider(
                value=weights[f"{term}_weight"], description=f"λ_{term}", **slider
            )
        return controls

    @staticmethod
    def _option_controls(w: Any, layout: Any) -> dict[str, Any]:
        """Relation filter, what L_IR distils, and the λ schedule."""
        return {
            "relation_filter": w.Dropdown(
                options=[
                    ("learned gate (ours)", "learned"),
                    ("none", "none"),
                    ("random, redrawn (authors' code)", "reference"),
                ],
                value="learned",
                description="relation filter",
                style=_STYLE,
                layout=layout,
            ),
            "ir_target": w.Dropdown(
                options=[("aggregated features z (code)", "features"), ("relation matrix A (paper)", "matrix")],
                value="features",
                description="L_IR distils",
                style=_STYLE,
                layout=layout,
            ),
            "weight_schedule": w.Dropdown(
                options=[("constant (paper)", "constant"), ("cosine decay to 0", "cosine")],
                value=DEFAULT["weight_schedule"],
                description="λ over training",
                style=_STYLE,
                layout=layout,
            ),
        }

    @staticmethod
    def _level_and_budget_controls(w: Any, iterations: int) -> dict[str, Any]:
        """The feature levels of the paper's terms, the number of iterations and the seed."""
        return {
            "pr_levels": w.SelectMultiple(
                options=LEVELS_PR, value=LEVELS_PR, description="L_PR levels", style=_STYLE, rows=5
            ),
            "ir_levels": w.SelectMultiple(
                options=LEVELS_IR, value=LEVELS_IR, description="L_IR / L_INS levels", style=_STYLE, rows=2
            ),
            "iterations": w.IntSlider(
                value=iterations, min=1, max=max(600, iterations), step=1, description="iterations", style=_STYLE
            ),
            "seed": w.IntText(value=0, description="seed", style=_STYLE, layout=w.Layout(width="220px")),
        }

    def variant(self) -> Variant:
        """The student the controls describe."""
        c = {k: v.value for k, v in self.controls.items()}
        common = {"method": c["method"], "iterations": int(c["iterations"]), "seed": int(c["seed"])}
        if c["method"] != "drkd":
            return Variant(**common)
        return Variant(
            **common,
            fi_weight=c["fi_weight"] if c["use_fi"] else 0.0,
            pa_weight=c["pa_weight"] if c["use_pa"] else 0.0,
            ira_weight=c["ira_weight"] if c["use_ira"] else 0.0,
            pr_weight=c["pr_weight"] if c["use_pr"] else 0.0,
            ir_weight=c["ir_weight"] if c["use_ir"] else 0.0,
            ins_weight=c["ins_weight"] if c["use_ins"] else 0.0,
            relation_filter=c["relation_filter"],
            ir_target=c["ir_target"],
            weight_schedule=c["weight_schedule"],
            pr_levels=list(c["pr_levels"]),
            ir_levels=list(c["ir_levels"]),
        )

    def train(self) -> dict[str, Any] | None:
        """Train (or reuse) the variant the controls describe, then refresh the comparison."""
        from drkd_viz.errors import UserError

        self.output.clear_output()
        with self.output:
            try:
                self.button.disabled = True
                self.last = train_variant(self.runs, self.preset, self.variant())
                how = "reused (already trained)" if self.last["cached"] else "trained"
                print(
                    f"{self.last['name']}: {how}; {self.last['formula']}; val AP {100 * self.last['metrics']['AP']:.1f}"
                )
            except UserError as exc:
                print(f"cannot train this variant: {exc}")
            finally:
                self.button.disabled = False
        self.refresh()
        return self.last

    def refresh(self) -> None:
        from IPython.display import display

        self.table = val_metrics(self.runs)
        self.results.clear_output()
        with self.results:
            if self.table.empty:
                print(f"no evaluated runs in {self.runs} yet")
                return
            display(self.table.round(2))
            show_figure(plot_val_comparison(self.table, highlight=self.last["folder"].name if self.last else None))


def offline_charts() -> str:
    """Make the interactive (Altair) charts render in JupyterLab without the internet: Altair's Jupyter renderer
    with its JavaScript bundled on this machine (vl-convert, anywidget: the notebooks extra). Without them Altair
    loads Vega from a CDN, and a classroom offline sees an error instead of a chart. Returns the renderer used."""
    import altair as alt

    try:
        alt.renderers.enable("jupyter", offline=True)
    except (ImportError, ValueError):  # an install without the notebooks extra: the CDN renderer, said so
        return "default (loads Vega from a CDN)"
    return "jupyter (offline)"


def show_figure(fig) -> None:
    """Display a figure as a PNG. Inside an ``ipywidgets.Output`` (``interactive``, panels) a PNG image is
    shown the same way in JupyterLab, and headless runs (nbclient) do not stall on large figure objects."""
    from IPython.display import Image, display

    from drkd_viz.viz.common import figure_png

    display(Image(figure_png(fig)))


def plot_val_comparison(table, highlight: str | None = None):
    """Bar chart of val AP and AP_S per run (the highlighted run in a darker colour)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 0.45 * len(table) + 1.2), layout="constrained")
    ax = fig.subplots()
    y = range(len(table))
    names = [f"{r.run} ({r.iterations} it)" for r in table.itertuples()]
    ax.barh([i + 0.2 for i in y], table["AP"], height=0.4, color="#4c72b0", label="AP")
    ax.barh([i - 0.2 for i in y], table["APs"], height=0.4, color="#dd8452", label="AP_S (small objects)")
    ax.set_yticks(list(y), names)
    for label, run in zip(ax.get_yticklabels(), table["run"], strict=True):
        if highlight and run.endswith(highlight):
            label.set_fontweight("bold")
    ax.invert_yaxis()
    ax.set_xlabel("val AP (%)")
    ax.set_title("Students and teacher on the val split (your variants are under variants/)")
    ax.legend(loc="lower right")
    return fig
