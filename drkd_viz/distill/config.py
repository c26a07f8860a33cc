"""The ``distill:`` section of a run config: method, teacher, loss weights, DRKD switches.

Every switch left out takes its value from the preset:

* ``reference`` — the authors' constants: all FPN levels, 64 graph nodes on P2/P3 and 256 above,
  3x3 RoIAlign on P2/P3, λ_pr = 1e-3, λ_ir = 4e-3, λ_ins = 2.4e-3, unnormalised (Frobenius) norms,
  GloRe without 1/HW, unscaled relation logits, the random redrawn relation filter, L_IR on features.
* ``default`` — ours; each deviation and why:
    - ``norm: mse`` and ``glore_normalize: true``: loss values no longer scale with batch, channels and
      image size, so one weight fits a laptop run and a COCO run (Frobenius norms grow with √elements);
    - λ values re-derived for the mse scale and chosen on ``val`` (see DEFAULT_WEIGHTS), cosine-decayed
      to 0 over training (``weight_schedule: cosine``): the relation terms guide the start and leave the
      end of training to the detection loss;
    - graph nodes shrink with the level (P2/P3 32, P4 16, P5+ 8): at 256 px inputs P5 has 8x10 pixels,
      256 nodes would outnumber them; and 64 nodes on P2 made a DRKD step cost 1.23x (student step +
      teacher forward), 32 nodes 1.10x (bench/drkd_overhead.py);
    - ``relation_filter: learned``: the authors' filter is random and never trained (spec §4);
    - ``relation_scale: true``: θ·φ divided by √d, otherwise the softmax over C·9/2-dim dot products
      saturates to one-hot at initialisation;
    - on RetinaNet (levels P3–P7) the instance losses use P3/P4, its two finest levels.

Ablations are small overrides of these (:data:`ABLATIONS`), used by the experiments.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from drkd_viz.distill.anchored_relation import AnchoredInstanceRelationLoss
from drkd_viz.distill.base import DistillationLoss
from drkd_viz.distill.baselines import FeatureImitationLoss, PearsonImitationLoss
from drkd_viz.distill.instance_relation import InstanceRelationLoss
from drkd_viz.distill.pixel_affinity import PixelAffinityLoss
from drkd_viz.distill.pixel_relation import PixelRelationLoss
from drkd_viz.errors import UserError
from drkd_viz.utils.typed_config import AT_LEAST_0, Range, from_dict

# the weights each method may use (the others are set to 0), in one place: the method names come from it
METHOD_WEIGHTS: dict[str, tuple[str, ...]] = {
    # the paper's terms, the anchored relation terms, and plain imitation (for the factorial of the controls)
    "drkd": ("pr_weight", "ir_weight", "ins_weight", "ira_weight", "pa_weight", "fi_weight"),
    "feature_imitation": ("fi_weight",),
    "pkd": ("pkd_weight",),
    # relation only: matrix-form relation terms, no imitation of any kind (the first control)
    "relation": ("ira_weight", "pa_weight"),
}
METHOD_NAMES = ("none", *METHOD_WEIGHTS)


@dataclass
class DistillConfig:
    method: Literal[METHOD_NAMES] = "drkd"  # type: ignore[valid-type]
    preset: Literal["default", "reference"] = "default"
    teacher: str | None = None  # a run folder (uses its export/) or a weights file (+ teacher_model)
    teacher_model: dict[str, Any] | None = None  # DetectorConfig fields; needed with a weights file
    pr_weight: Annotated[float, AT_LEAST_0] | None = None  # λ_pr
    ir_weight: Annotated[float, AT_LEAST_0] | None = None  # λ_ir
    ins_weight: Annotated[float, AT_LEAST_0] | None = None  # λ_ins
    fi_weight: Annotated[float, AT_LEAST_0] | None = None  # feature imitation weight (method feature_imitation)
    pkd_weight: Annotated[float, AT_LEAST_0] | None = None  # PKD weight (method pkd)
    ira_weight: Annotated[float, AT_LEAST_0] | None = None  # λ_ira, the anchored instance relation (L_IRA)
    pa_weight: Annotated[float, AT_LEAST_0] | None = None  # λ_pa, the pixel affinity (L_PA)
    pr_levels: list[str] | None = None
    nodes: dict[str, int] | None = None  # graph nodes per level
    glore_normalize: bool | None = None
    ir_levels: list[str] | None = None
    roi_size: Annotated[int, Range(1, 14)] | None = None
    relation_filter: Literal["learned", "none", "reference"] | None = None
    ir_target: Literal["features", "matrix"] | None = None
    relation_scale: bool | None = None
    norm: Literal["mse", "frobenius"] | None = None
    fi_levels: list[str] | None = None
    pkd_levels: list[str] | None = None
    ira_levels: list[str] | None = None
    pa_levels: list[str] | None = None
    # --- the anchored relation terms (anchored_relation.py, pixel_affinity.py) ---
    ira_temperature: Annotated[float, Range(1e-3, 10.0)] | None = None  # τ of both sides' relation rows
    ira_background: Annotated[int, Range(0, 64)] | None = None  # background nodes added to each image
    ira_form: Literal["kl", "distance"] | None = None  # cosine rows compared by KL, or RKD's distances by Huber
    ira_student: Literal["features", "adapter"] | None = None  # the student's own vectors, or through a 1x1 conv
    pa_grid: Annotated[int, Range(2, 64)] | None = None  # each level pooled to at most grid x grid cells
    # learned: G_t trained by L_PR (the authors'); fitted: frozen units fitted on the teacher's detection loss
    pr_teacher_units: Literal["learned", "fitted"] | None = None
    pr_fit_iterations: Annotated[int, Range(1, 100_000)] | None = None  # steps of that fit
    pr_target: Literal["relation", "residual"] | None = None  # G(x), or only what the unit adds: G(x) − x
    # --- the controls that separate relation knowledge from imitation (controls.py) ---
    rotate_teacher: bool | None = None  # a fresh random rotation of the teacher's channels every step
    shuffle_relations: bool | None = None  # the relation targets' nodes permuted within each image
    # how the λ weights change over training: constant (the paper), or cosine-decayed from λ to 0
    weight_schedule: Literal["constant", "cosine"] | None = None
    # --- the design suspects of the distillation ladder (docs/method.md, "The distillation ladder") ---
    # joint: one gradient clip over student and distillation modules (the authors'); separate: the student's
    # gradient is clipped on its own and the distillation modules form their own optimiser group and clip
    clip: Literal["joint", "separate"] | None = None
    # learned: the teacher-side relation modules R_t (the authors'); cosine: parameter-free teacher relations,
    # A^t = softmax_j(cos(r^t_i, r^t_j) / 0.1) and z^t = r^t + A^t·r^t, anchored to the teacher's features
    teacher_relation: Literal["learned", "cosine"] | None = None
    # start the graph units' residual branch at zero (BatchNorm γ = 0, as the GloRe authors do), on both sides
    glore_zero_init: bool | None = None
    # linear: f_i / f_r map pooled instance vectors (C_s·s² -> C_t·s², the authors'); conv: one 1x1 conv per
    # level maps the student's feature before pooling, so instances are compared in the teacher's channels
    instance_adapter: Literal["linear", "conv"] | None = None
    # standardise each channel of both sides before the MSE of L_PR and L_INS (as PKD does)
    standardize: bool | None = None

    def weight(self, key: str) -> float:
        """λ of a term by its ``distill:`` key (``pr_weight``, …); 0 when unset."""
        return getattr(self, key) or 0.0

    def to_dict(self) -> dict[str, Any]:
        """The section as config.yaml records it."""
        return dataclasses.asdict(self)


WEIGHT_SCHEDULES = ("constant", "cosine")


def weight_factor(schedule: str, progress: float) -> float:
    """The multiplier of every λ at ``progress`` ∈ [0, 1] of training."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    raise UserError(f"distill.weight_schedule: unknown {schedule!r}; choose one of {', '.join(WEIGHT_SCHEDULES)}")


@dataclass(frozen=True)
class Term:
    """One weighted distillation term of the objective: the loss key it is logged under, the ``distill:`` key of
    its λ, its symbol in the equation, the loss module that computes it (one module may compute two: the paper's
    instance branch gives L_IR and L_INS), and the ``distill:`` key of the FPN levels it reads."""

    key: str
    weight: str
    symbol: str
    module: type[DistillationLoss]
    levels: str


# The one list the distiller builds its modules from and that drives its forward, formula() and logged loss keys,
# in the order the terms are computed and summed
TERMS = (
    Term("loss_pr", "pr_weight", "L_PR", PixelRelationLoss, "pr_levels"),
    Term("loss_ir", "ir_weight", "L_IR", InstanceRelationLoss, "ir_levels"),
    Term("loss_ins", "ins_weight", "L_INS", InstanceRelationLoss, "ir_levels"),
    Term("loss_ira", "ira_weight", "L_IRA", AnchoredInstanceRelationLoss, "ira_levels"),
    Term("loss_pa", "pa_weight", "L_PA", PixelAffinityLoss, "pa_levels"),
    Term("loss_fi", "fi_weight", "L_FI", FeatureImitationLoss, "fi_levels"),
    Term("loss_pkd", "pkd_weight", "L_PKD", PearsonImitationLoss, "pkd_levels"),
)
TERM_KEYS = tuple(term.key for term in TERMS)  # loss keys a distillation objective may add to L_det's
WEIGHT_KEYS = tuple(term.weight for term in TERMS)
LEVEL_KEYS = tuple(dict.fromkeys(term.levels for term in TERMS))  # the FPN levels each loss reads
# levels a loss reads when the section leaves them out: all of them, except these (the finest N)
FINEST_LEVELS = {"ir_levels": 2, "ira_levels": 2, "pa_levels": 3}


def active_terms(settings: DistillConfig | None) -> tuple[Term, ...]:
    """The terms a resolved ``distill:`` section switches on (λ > 0), in computation order."""
    return tuple(term for term in TERMS if settings is not None and settings.weight(term.weight) > 0)


def formula(settings: DistillConfig | None) -> str:
    """The loss a resolved ``distill:`` section minimises, as it would be written in the paper."""
    terms = [f"{settings.weight(term.weight):g}·{term.symbol}" for term in active_terms(settings)]
    if not terms:
        return "L = L_det"
    if settings.weight_schedule == "cosine":
        return f"L = L_det + c(t)·({' + '.join(terms)}),  c(t) = ½(1 + cos πt), t = step / steps"
    return "L = L_det + " + " + ".join(terms)


PKD_WEIGHT = 4.0  # its peak on val (docs/results.md, "How the ladder went")

# Each method's λ by preset: a method uses the weights METHOD_WEIGHTS gives it, unset ones from here (0 if absent).
# Under `default` every λ was searched on val until val AP turned down; docs/results.md and
# configs/demo/val_ladder.json hold every rung, the losing ones too.
# The paper's three terms at the λ that search found for them: DRKD's default until round 6
PAPER_TERM_WEIGHTS = {"pr_weight": 6.0, "ir_weight": 0.05, "ins_weight": 0.05}
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "drkd": {"fi_weight": 3.0, "ira_weight": 1.0, "pa_weight": 5.0},  # imitation + anchored relations (round 6)
    "relation": {"ira_weight": 3.0, "pa_weight": 15.0},  # relation only: 3x the gradient-matched weights
    "feature_imitation": {"fi_weight": 3.0},
    "pkd": {"pkd_weight": PKD_WEIGHT},
}
REFERENCE_WEIGHTS: dict[str, dict[str, float]] = {
    "drkd": {"pr_weight": 1e-3, "ir_weight": 4e-3, "ins_weight": 2.4e-3},  # the authors' constants
    "relation": DEFAULT_WEIGHTS["relation"],  # not the authors' methods: the same under both presets
    "feature_imitation": {"fi_weight": 1.0},
    "pkd": {"pkd_weight": PKD_WEIGHT},
}
REFERENCE = {
    "nodes": {"P2": 64, "P3": 64, "P4": 256, "P5": 256, "P6": 256, "P7": 256},
    "glore_normalize": False,
    "roi_size": 3,
    "relation_filter": "reference",
    "ir_target": "features",
    "relation_scale": False,
    "norm": "frobenius",
    "weight_schedule": "constant",
    "clip": "joint",
    "teacher_relation": "learned",
    "glore_zero_init": False,
    "instance_adapter": "linear",
    "standardize": False,
    **(
        ANCHORED := {  # the anchored relation terms and the controls: not the authors', the same under both presets
            "ira_temperature": 0.1,
            "ira_background": 4,
            "ira_form": "kl",
            "ira_student": "features",  # the student's own vectors: only a change of its features lowers L_IRA
            "pa_grid": 12,
            "pr_teacher_units": "learned",
            "pr_fit_iterations": 200,
            "pr_target": "relation",
            "rotate_teacher": False,
            "shuffle_relations": False,
        }
    ),
}
# the authors' switches but these (docs/results.md: the ladder's other switches stay as the authors had them, since
# none won alone on val)
DEFAULT = {
    **REFERENCE,
    "nodes": {"P2": 32, "P3": 32, "P4": 16, "P5": 8, "P6": 8, "P7": 8},
    "glore_normalize": True,
    "relation_filter": "learned",
    "relation_scale": True,
    "norm": "mse",
    "weight_schedule": "cosine",
    # zero-initialised graph units keep L_PR's target the teacher's own features instead of a unit only the
    # distillation loss trains (the one switch that won on val)
    "glore_zero_init": True,
}
PRESETS = {"default": DEFAULT, "reference": REFERENCE}
PRESET_WEIGHTS = {"default": DEFAULT_WEIGHTS, "reference": REFERENCE_WEIGHTS}

# name -> overrides of the drkd method (the experiments' ablation grid): DRKD without each of its parts, and the paper's
# terms (the previous default) with the authors' design switches
PAPER_TERMS = {**PAPER_TERM_WEIGHTS, "fi_weight": 0.0, "ira_weight": 0.0, "pa_weight": 0.0}
ABLATIONS: dict[str, dict[str, Any]] = {
    "drkd": {},
    "no_pixel_relation": {"pa_weight": 0.0},
    "no_instance_relation": {"ira_weight": 0.0},
    "paper_terms": PAPER_TERMS,
    "pr_only": {**PAPER_TERMS, "ir_weight": 0.0, "ins_weight": 0.0},
    "ir_only": {**PAPER_TERMS, "pr_weight": 0.0},
    "ir_no_filter": {**PAPER_TERMS, "pr_weight": 0.0, "relation_filter": "none"},
    "ir_reference_filter": {**PAPER_TERMS, "pr_weight": 0.0, "relation_filter": "reference"},
    "ir_matrix": {**PAPER_TERMS, "pr_weight": 0.0, "ir_target": "matrix"},
}

# The controlled study's arms (issue "relations that carry knowledge"; pre-registered with its bar in
# experiments/relation_report.py): name -> the whole distill section but the teacher
CONTROLS: dict[str, dict[str, Any]] = {
    # relation only: the anchored relation terms, no imitation of any kind
    "relation": {"method": "relation"},
    # the teacher's channels rotated afresh every step: relations unchanged, imitation targets scrambled
    "relation_rotate": {"method": "relation", "rotate_teacher": True},
    "fi_rotate": {"method": "feature_imitation", "rotate_teacher": True},
    # the relation targets' nodes permuted within each image: a real relation about the wrong nodes
    "relation_shuffle": {"method": "relation", "shuffle_relations": True},
}


def resolve_distill(section: DistillConfig | dict[str, Any], levels: list[str]) -> DistillConfig | None:
    """Check a ``distill:`` section and fill every unset switch from its preset, for a detector with
    FPN ``levels``: a DistillConfig with nothing left unset (``teacher_model`` apart), or None for method
    ``none``. Resolving a resolved section changes nothing."""
    cfg = section if isinstance(section, DistillConfig) else from_dict(DistillConfig, section, where="distill")
    if cfg.method == "none":
        return None
    if not cfg.teacher:
        raise UserError(f"distill.teacher: method {cfg.method!r} needs a teacher (a run folder or a weights file)")
    fill: dict[str, Any] = {key: value for key, value in PRESETS[cfg.preset].items() if getattr(cfg, key) is None}
    weights = PRESET_WEIGHTS[cfg.preset][cfg.method]
    fill.update({key: weights.get(key, 0.0) for key in METHOD_WEIGHTS[cfg.method] if getattr(cfg, key) is None})
    for key in LEVEL_KEYS:  # the losses' levels: all of them, or the finest few (FINEST_LEVELS)
        if getattr(cfg, key) is None:
            fill[key] = list(levels[: FINEST_LEVELS.get(key, len(levels))])
    # the weights of the other methods are 0: one section names one method
    fill.update({key: 0.0 for key in WEIGHT_KEYS if key not in METHOD_WEIGHTS[cfg.method]})
    resolved = dataclasses.replace(cfg, **copy.deepcopy(fill))
    for key in LEVEL_KEYS:
        unknown = [lv for lv in getattr(resolved, key) if lv not in levels]
        if unknown:
            raise UserError(f"distill.{key}: {unknown} are not levels of this detector; it has {levels}")
    bad_nodes = {lv: n for lv, n in resolved.nodes.items() if isinstance(n, bool) or not isinstance(n, int) or n < 1}
    if bad_nodes:
        raise UserError(f"distill.nodes: node counts must be integers >= 1, got {bad_nodes}")
    missing_nodes = [lv for lv in resolved.pr_levels if lv not in resolved.nodes]
    if missing_nodes:
        raise UserError(f"distill.nodes: no node count for levels {missing_nodes}")
    for key in WEIGHT_KEYS:
        if resolved.weight(key) < 0:
            raise UserError(f"distill.{key} must be >= 0, got {resolved.weight(key)}")
    return resolved


def ablation_settings(name: str) -> str:
    """What an ablation or a control arm changes relative to DRKD, in words (ABLATIONS, CONTROLS)."""
    if name not in ABLATIONS:
        return {
            "teacher": "the teacher",
            "baseline": "no distillation",
            "feature_imitation": "FPN feature imitation",
            "pkd": "PKD: Pearson-correlation feature imitation",
            "relation": "relation only: the anchored instance relation and pixel affinity, no imitation",
            "relation_rotate": "relation only, the teacher's channels rotated at random every step",
            "fi_rotate": "feature imitation, the teacher's channels rotated at random every step",
            "relation_shuffle": "relation only, the relation targets' nodes shuffled within each image",
        }.get(name, "")
    changes = ABLATIONS[name]
    if not changes:
        return "DRKD as configured"
    words = []
    if set(PAPER_TERMS) <= set(changes):  # an ablation of the paper's terms: say so, then what differs from them
        words.append("the paper's terms instead of DRKD's")
        changes = {k: v for k, v in changes.items() if k not in PAPER_TERMS or v != PAPER_TERMS[k]}
    return ", ".join([*words, *(f"{k} = {v}" for k, v in changes.items())])
