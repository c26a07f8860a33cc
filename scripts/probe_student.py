"""Probe the demo's student recipes on val: one change at a time from a given starting recipe.

    python scripts/probe_student.py --runs runs/demo --out runs/probe [--only cos200,cos200-anchors12]

Starts from the `demo` pipeline's baseline-s0 config (its data and pre-trained ResNet-10 in RUNS, made if
absent), or for the distillation ladder (LADDER, names starting "ladder-") from its drkd-s0 config, whose
teacher must be in RUNS (run the demo first), applies a variant's overrides, trains it into OUT/<variant>/
and evaluates it on **val** (the test split is kept for the report). Finished variants are cached:
rerunning prints their numbers again.
The variants below are the ones tried while calibrating (README, "How the dataset was calibrated"); the
first ones were run on the configs of that time, before anchor sizes were set, so the `anchor_sizes=null`
override reproduces them on today's configs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from drkd_viz.engine.config import load_config
from drkd_viz.engine.trainer import train
from drkd_viz.experiments.pipeline import PRESETS, ensure_prepared, plan
from drkd_viz.resources import configs_dir
from drkd_viz.runs import RunFolder
from drkd_viz.utils.io import atomic_write_json

DEFAULT_ANCHORS = ["model.anchor_sizes=null"]  # torchvision's COCO anchors scaled to 160 px: 6 … 102 px
STEP = ["optim.schedule=step", "optim.milestones=[0.8]"]
# name -> overrides of the demo baseline's config (200 iterations, batch 8); every variant names its lr, since
# the demo's own changed from 0.02 to 0.04 on these results
VARIANTS: dict[str, list[str]] = {
    "demo-step200": ["optim.lr=0.02", *DEFAULT_ANCHORS, *STEP],
    "cos200": ["optim.lr=0.02", *DEFAULT_ANCHORS, "optim.schedule=cosine"],
    "cos200-lr04": [*DEFAULT_ANCHORS, "optim.schedule=cosine", "optim.lr=0.04"],
    # recorded with val AP 23.3, but that run had lr 0.04: load_config then wrote cos200-lr04's override into
    # the base mapping (fixed). Rerun today it trains at lr 0.02, like the demo's baseline (15.3).
    "cos200-anchors12": ["optim.lr=0.02", "optim.schedule=cosine", "model.anchor_sizes=[12,24,48,96,192]"],
    "cos200-lr04-anchors12": ["optim.schedule=cosine", "optim.lr=0.04", "model.anchor_sizes=[12,24,48,96,192]"],
    "step200-anchors12": ["optim.lr=0.02", *STEP, "model.anchor_sizes=[12,24,48,96,192]"],
    "cos200-anchors16": ["optim.lr=0.02", "optim.schedule=cosine", "model.anchor_sizes=[16,32,64,128,256]"],
    "cos200-anchors8": ["optim.lr=0.02", "optim.schedule=cosine", "model.anchor_sizes=[8,16,32,64,128]"],
    "cos160-anchors12": [
        "optim.lr=0.02",
        "optim.schedule=cosine",
        "model.anchor_sizes=[12,24,48,96,192]",
        "train.iterations=160",
    ],
    "cos400-anchors12": [
        "optim.lr=0.02",
        "optim.schedule=cosine",
        "model.anchor_sizes=[12,24,48,96,192]",
        "train.iterations=400",
    ],
    # the matched 2x2 (anchors 12 / 16 px x lr 0.02 / 0.04), each cell on a second seed as well
    "cos200-lr04-anchors16": ["optim.schedule=cosine", "optim.lr=0.04", "model.anchor_sizes=[16,32,64,128,256]"],
    "cos200-anchors12-seed1": [
        "optim.lr=0.02",
        "optim.schedule=cosine",
        "model.anchor_sizes=[12,24,48,96,192]",
        "seed=1",
    ],
    "cos200-anchors16-seed1": [
        "optim.lr=0.02",
        "optim.schedule=cosine",
        "model.anchor_sizes=[16,32,64,128,256]",
        "seed=1",
    ],
    "cos200-lr04-anchors12-seed1": [
        "optim.schedule=cosine",
        "optim.lr=0.04",
        "model.anchor_sizes=[12,24,48,96,192]",
        "seed=1",
    ],
    "cos200-lr04-anchors16-seed1": [
        "optim.schedule=cosine",
        "optim.lr=0.04",
        "model.anchor_sizes=[16,32,64,128,256]",
        "seed=1",
    ],
    # can lr 0.04 buy back the 40 iterations the demo's 20-minute target needs?
    "cos160-lr04-anchors12": [
        "optim.schedule=cosine",
        "optim.lr=0.04",
        "model.anchor_sizes=[12,24,48,96,192]",
        "train.iterations=160",
    ],
    "cos160-lr04-anchors16": [
        "optim.schedule=cosine",
        "optim.lr=0.04",
        "model.anchor_sizes=[16,32,64,128,256]",
        "train.iterations=160",
    ],
    # the study's budget with the chosen recipe: is the teacher-baseline gap still >= 10 AP?
    "cos400-lr04-anchors16": [
        "optim.schedule=cosine",
        "optim.lr=0.04",
        "model.anchor_sizes=[16,32,64,128,256]",
        "train.iterations=400",
    ],
    # the new recipe closes the gap to 6.3 AP at 400: the study's budget, if this keeps it >= 10 AP
    "cos300-lr04-anchors16": [
        "optim.schedule=cosine",
        "optim.lr=0.04",
        "model.anchor_sizes=[16,32,64,128,256]",
        "train.iterations=300",
    ],
    "cos160-lr04-anchors16-seed1": [
        "optim.schedule=cosine",
        "optim.lr=0.04",
        "model.anchor_sizes=[16,32,64,128,256]",
        "train.iterations=160",
        "seed=1",
    ],
    # 160 iterations lost 15 AP against 200: is it the 100-iteration warm-up taking most of the run?
    "cos160-warm50-anchors12": [
        "optim.lr=0.02",
        "optim.schedule=cosine",
        "model.anchor_sizes=[12,24,48,96,192]",
        "train.iterations=160",
        "optim.warmup_iters=50",
    ],
}

# The distillation ladder (issue 14, docs/method.md): each design suspect switched on alone from the demo's
# DRKD student (160 iterations, seed 0), beside the baseline and both imitations at the same budget.
# name -> (the demo job it starts from, overrides)
# Every rung below was run from the defaults of its time. Once the ladder's winners became the defaults (L_PR λ 6.0
# with zero-initialised units, feature imitation λ 3.0), these pins keep each rung reproducible: they come first,
# so a rung's own overrides still win.
LADDER_PINS: dict[str, list[str]] = {
    "drkd-s0": ["distill.pr_weight=0.0175", "distill.glore_zero_init=false"],
    "feature_imitation-s0": ["distill.fi_weight=0.15"],
}
# Every variant recorded so far ran with the student's earlier test-time proposal counts (300 -> 150); the demo's
# student now keeps 100 (configs/demo/student_faster_rcnn.yaml), so every variant is pinned to the old counts
TEST_PROPOSAL_PINS = ["model.rpn_pre_nms_top_n_test=300", "model.rpn_post_nms_top_n_test=150"]
LADDER: dict[str, tuple[str, list[str]]] = {
    "ladder-baseline": ("baseline-s0", []),
    "ladder-drkd": ("drkd-s0", []),
    "ladder-fi": ("feature_imitation-s0", []),
    "ladder-pkd": ("drkd-s0", ["distill.method=pkd", "distill.pkd_weight=0.2"]),
    "ladder-clip-separate": ("drkd-s0", ["distill.clip=separate"]),
    "ladder-teacher-cosine": ("drkd-s0", ["distill.teacher_relation=cosine"]),
    "ladder-zero-init": ("drkd-s0", ["distill.glore_zero_init=true"]),
    "ladder-conv-adapter": ("drkd-s0", ["distill.instance_adapter=conv"]),
    "ladder-standardize": ("drkd-s0", ["distill.standardize=true"]),
    "ladder-pr-no-P6": ("drkd-s0", ["distill.pr_levels=[P2,P3,P4,P5]"]),
    # the demo DRKD run's diagnostics: each weighted relation term's gradient on the student is 2-4 % of
    # ||grad L_det|| (0.05-0.08 against 2.1), because the λ were set to balance loss values, not gradients;
    # so each λ times 10, and feature imitation given the same lever (its gradient was 8 %)
    "ladder-lambda-x10": ("drkd-s0", ["distill.pr_weight=0.175", "distill.ir_weight=0.5", "distill.ins_weight=0.5"]),
    "ladder-fi-x4": ("feature_imitation-s0", ["distill.fi_weight=0.6"]),
    # λ search, round 2 (each from one seed-0 run above): L_PR at feature imitation's tuned λ (with the graph
    # unit's residual, L_PR contains an imitation of the teacher's features, so 0.6 gives it FI-x4's lever);
    # feature imitation and PKD pushed further, so each imitation gets at least DRKD's tuning budget
    "ladder-pr-0.6": ("drkd-s0", ["distill.pr_weight=0.6"]),
    "ladder-fi-x10": ("feature_imitation-s0", ["distill.fi_weight=1.5"]),
    "ladder-pkd-x4": ("drkd-s0", ["distill.method=pkd", "distill.pkd_weight=0.8"]),
    # round 3: feature imitation at λ 1.5 gave val AP 34.1 (its gradient ~ L_det's) while L_PR at 0.6 gave 22.1
    # with a gradient half of L_det's. L_PR's target is the teacher-side graph unit's output, which only the
    # distillation loss trains (residual 0.5-1.3 of x); zero-initialised units keep the target the teacher's
    # own features, so L_PR at FI's λ then is imitation through G_s, and L_IR/L_INS come on top
    "ladder-fi-x20": ("feature_imitation-s0", ["distill.fi_weight=3.0"]),
    "ladder-pr-1.5": ("drkd-s0", ["distill.pr_weight=1.5"]),
    "ladder-pr-1.5-zero-init": ("drkd-s0", ["distill.pr_weight=1.5", "distill.glore_zero_init=true"]),
    "ladder-pr-1.5-zero-init-cosine": (
        "drkd-s0",
        ["distill.pr_weight=1.5", "distill.glore_zero_init=true", "distill.teacher_relation=cosine"],
    ),
    # round 4: feature imitation still rose at λ 3.0 (36.0), so it gets more until it turns down, and DRKD's
    # L_PR (zero-initialised units) the same λ
    "ladder-fi-x40": ("feature_imitation-s0", ["distill.fi_weight=6.0"]),
    "ladder-pr-3-zero-init": ("drkd-s0", ["distill.pr_weight=3.0", "distill.glore_zero_init=true"]),
    "ladder-pr-6-zero-init": ("drkd-s0", ["distill.pr_weight=6.0", "distill.glore_zero_init=true"]),
    # PKD was still rising at 0.8 (gradient 16 % of L_det's, where feature imitation peaked at ~2.5x L_det's)
    "ladder-pkd-x20": ("drkd-s0", ["distill.method=pkd", "distill.pkd_weight=4.0"]),
    # feature imitation's λ turned down at 6.0 (30.8 after 36.0 at 3.0); DRKD's was still rising at 6.0 (35.1),
    # so the same rule (search until it turns down) gives it one more step
    "ladder-pr-12-zero-init": ("drkd-s0", ["distill.pr_weight=12.0", "distill.glore_zero_init=true"]),
    # the candidates on a second seed (paired with the same seed's baseline and DRKD defaults) before any of
    # them becomes a default: feature imitation's best λ (3.0) and DRKD's best (L_PR λ, zero-init units)
    "ladder-baseline-seed1": ("baseline-s0", ["seed=1"]),
    "ladder-drkd-seed1": ("drkd-s0", ["seed=1"]),
    "ladder-fi-x20-seed1": ("feature_imitation-s0", ["distill.fi_weight=3.0", "seed=1"]),
    "ladder-pr-6-zero-init-seed1": ("drkd-s0", ["distill.pr_weight=6.0", "distill.glore_zero_init=true", "seed=1"]),
    # PKD until it turns down (it did: 27.4 and 27.6 after 28.9 at 4.0)
    "ladder-pkd-8": ("drkd-s0", ["distill.method=pkd", "distill.pkd_weight=8.0"]),
    "ladder-pkd-16": ("drkd-s0", ["distill.method=pkd", "distill.pkd_weight=16.0"]),
    # queued for the next rounds (README, "How the ladder went", Next): L_IR and L_INS at the new L_PR (their
    # gradients are 4-5 % of L_det's); a constant λ instead of the cosine decay
    "ladder-pr-6-ir-ins-x10": (
        "drkd-s0",
        ["distill.pr_weight=6.0", "distill.glore_zero_init=true", "distill.ir_weight=0.5", "distill.ins_weight=0.5"],
    ),
    "ladder-pr-6-ir-ins-x40": (
        "drkd-s0",
        ["distill.pr_weight=6.0", "distill.glore_zero_init=true", "distill.ir_weight=2.0", "distill.ins_weight=2.0"],
    ),
    "ladder-pr-6-constant": (
        "drkd-s0",
        ["distill.pr_weight=6.0", "distill.glore_zero_init=true", "distill.weight_schedule=constant"],
    ),
    "ladder-fi-x20-constant": ("feature_imitation-s0", ["distill.fi_weight=3.0", "distill.weight_schedule=constant"]),
    # round 5 runs the queued rungs above in one session on one machine; the same config gives different val AP
    # on different CPUs, so the two defaults they are compared with are rerun beside them under their own names
    "ladder-round5-pr-6-zero-init": ("drkd-s0", ["distill.pr_weight=6.0", "distill.glore_zero_init=true"]),
    "ladder-round5-fi-x20": ("feature_imitation-s0", ["distill.fi_weight=3.0"]),
    # a null control: DRKD's modules built and stepped (the same random draws as ladder-drkd) with every λ
    # ~0, so its distance to ladder-baseline is what one seed's noise does, not what distillation does
    "ladder-lambda-1e-9": (
        "drkd-s0",
        ["distill.pr_weight=1.0e-9", "distill.ir_weight=1.0e-9", "distill.ins_weight=1.0e-9"],
    ),
}

# Round 6, relations that carry knowledge (docs/method.md, "Anchored relations"): the anchored relation terms L_IRA and
# L_PA, alone (method relation: no imitation of any kind) and beside feature imitation, and the controls, from the
# demo's current student recipe (160 iterations, seed 0, 100 test-time proposals). No pins: every rung names each λ
# it uses, so it reruns as it ran whatever the defaults become. The starting λ match the terms' gradients to L_det's
# (24 steps at λ 1: ‖∇L_IRA‖ 3.0-3.6, ‖∇L_PA‖ 0.46-0.79, ‖∇L_det‖ 2.8-4.1, ‖∇L_FI‖ 2.4-4.8).
RELATION = ["distill.method=relation", "distill.ira_weight=1.0", "distill.pa_weight=5.0"]
RELATION_X3 = ["distill.method=relation", "distill.ira_weight=3.0", "distill.pa_weight=15.0"]
RELATION_X9 = ["distill.method=relation", "distill.ira_weight=9.0", "distill.pa_weight=45.0"]
FI = ["distill.fi_weight=3.0"]
ROTATE = ["distill.rotate_teacher=true"]
# drkd-s0 without the paper's terms: plain imitation plus the anchored relations (the factorial's full cell)
NO_PAPER_TERMS = ["distill.pr_weight=0", "distill.ir_weight=0", "distill.ins_weight=0"]
PAPER_TERMS = ["distill.pr_weight=6.0", "distill.ir_weight=0.05", "distill.ins_weight=0.05"]
NO_NEW_TERMS = ["distill.fi_weight=0", "distill.ira_weight=0", "distill.pa_weight=0"]
RELATION_LADDER: dict[str, tuple[str, list[str]]] = {
    "r6-baseline": ("baseline-s0", []),
    "r6-relation": ("drkd-s0", RELATION),
    "r6-fi": ("feature_imitation-s0", FI),
    "r6-fi-relation": ("drkd-s0", [*NO_PAPER_TERMS, *FI, "distill.ira_weight=1.0", "distill.pa_weight=5.0"]),
    "r6-relation-x3": ("drkd-s0", RELATION_X3),
    "r6-relation-x9": ("drkd-s0", RELATION_X9),  # x3 still rose (33.0 after 32.5): one more step
    "r6-relation-rotate": ("drkd-s0", [*RELATION, *ROTATE]),
    "r6-fi-rotate": ("feature_imitation-s0", [*FI, *ROTATE]),
    # the paper's terms at the λ rounds 2-5 chose (DRKD's default until this round)
    "r6-drkd": ("drkd-s0", [*PAPER_TERMS, "distill.glore_zero_init=true", *NO_NEW_TERMS]),
    # the paper's terms with the anchored relations on top
    "r6-drkd-anchored": (
        "drkd-s0",
        [
            *PAPER_TERMS,
            "distill.glore_zero_init=true",
            "distill.fi_weight=0",
            "distill.ira_weight=1.0",
            "distill.pa_weight=5.0",
        ],
    ),
    "r6-relation-ira": ("drkd-s0", ["distill.method=relation", "distill.ira_weight=1.0", "distill.pa_weight=0"]),
    "r6-relation-pa": ("drkd-s0", ["distill.method=relation", "distill.ira_weight=0", "distill.pa_weight=5.0"]),
    "r6-relation-shuffle": ("drkd-s0", [*RELATION, "distill.shuffle_relations=true"]),
    "r6-relation-adapter": ("drkd-s0", [*RELATION, "distill.ira_student=adapter"]),
    # the authors' Frobenius norm on L_PA (‖ΔAff‖ per image, summed): λ 0.15 gives it L_PA-mse's gradient at λ 5
    "r6-relation-frobenius": ("drkd-s0", [*RELATION, "distill.norm=frobenius", "distill.pa_weight=0.15"]),
    # the same at a λ that matches L_PA-mse's gradient (at 0.15 its gradient was 15x ‖∇L_det‖; 0.15 x 0.70 / 51)
    "r6-relation-frobenius-matched": ("drkd-s0", [*RELATION, "distill.norm=frobenius", "distill.pa_weight=0.002"]),
    # (a) of the issue: L_PR with teacher units fitted on the teacher's detection loss, distilling only their
    # residual G(x) − x (no imitation), alone and beside the anchored relations
    "r6-pr-fitted-residual": (
        "drkd-s0",
        [
            "distill.pr_weight=6.0",
            "distill.ir_weight=0",
            "distill.ins_weight=0",
            *NO_NEW_TERMS,
            "distill.pr_teacher_units=fitted",
            "distill.pr_target=residual",
        ],
    ),
}

# The factorial on val (pre-registered with the controls): {imitation} x {pixel relation} x {instance relation}, each
# on or off at the λ the rungs above chose, 2 seeds; the all-off cell is the baseline. Run it with --only factorial.
# Seed 0's cells that are rungs above (the same settings; CPU runs are deterministic) are those rungs.
FACTORIAL_WEIGHTS = {"fi": "distill.fi_weight=3.0", "pa": "distill.pa_weight=5.0", "ira": "distill.ira_weight=1.0"}
SEED0_RUNGS = {
    (0, 0, 0): "r6-baseline",
    (1, 0, 0): "r6-fi",
    (0, 1, 1): "r6-relation",
    (1, 1, 1): "r6-fi-relation",
    (0, 0, 1): "r6-relation-ira",
    (0, 1, 0): "r6-relation-pa",
}
FACTORIAL: dict[str, tuple[str, list[str]]] = {}
FACTORIAL_CELLS: dict[str, tuple[int, int, int, int]] = {}  # run name -> (fi, pa, ira, seed)
for seed in (0, 1):
    for fi in (0, 1):
        for pa in (0, 1):
            for ira in (0, 1):
                if seed == 0 and (fi, pa, ira) in SEED0_RUNGS:
                    FACTORIAL_CELLS[SEED0_RUNGS[fi, pa, ira]] = (fi, pa, ira, seed)
                    continue
                on = [FACTORIAL_WEIGHTS[t] for t, used in (("fi", fi), ("pa", pa), ("ira", ira)) if used]
                start = "drkd-s0" if on else "baseline-s0"
                off = [f"distill.{t}_weight=0" for t, used in (("fi", fi), ("pa", pa), ("ira", ira)) if not used]
                overrides = [*NO_PAPER_TERMS, *on, *off] if on else []
                name = f"r6-factorial-fi{fi}-pa{pa}-ira{ira}-s{seed}"
                FACTORIAL[name] = (start, [*overrides, f"seed={seed}"])
                FACTORIAL_CELLS[name] = (fi, pa, ira, seed)
RELATION_LADDER.update(FACTORIAL)
GROUPS = {"factorial": list(FACTORIAL_CELLS), "relation-ladder": [n for n in RELATION_LADDER if n not in FACTORIAL]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/demo"))
    parser.add_argument("--out", type=Path, default=Path("runs/probe"))
    parser.add_argument(
        "--only",
        default=",".join(VARIANTS),
        help=f"comma-separated variant names, or a group ({', '.join(GROUPS)})",
    )
    parser.add_argument(
        "--record",
        type=Path,
        default=configs_dir() / "demo" / "val_ladder.json",
        help="the JSON record of every variant tried on val, which the study's report prints as its appendix",
    )
    args = parser.parse_args()
    jobs = {job.name: job for job in plan(PRESETS["demo"], args.runs)}
    ensure_prepared([jobs["baseline-s0"]], quiet=False)
    names = [n for part in args.only.split(",") for n in GROUPS.get(part, [part])]
    for name in names:
        job, overrides = {**LADDER, **RELATION_LADDER}.get(name, ("baseline-s0", VARIANTS.get(name)))
        if overrides is None:
            known = ", ".join([*VARIANTS, *LADDER, *RELATION_LADDER])
            raise SystemExit(f"unknown variant {name!r}; known: {known}")
        # the pins first; a variant's own value of a pinned key replaces the pin (round 6 pins nothing)
        pins = (
            []
            if name in RELATION_LADDER
            else [*TEST_PROPOSAL_PINS, *(LADDER_PINS.get(job, []) if name in LADDER else [])]
        )
        own = {o.split("=", 1)[0] for o in overrides}
        overrides = [*(p for p in pins if p.split("=", 1)[0] not in own), *overrides]
        raw = json.loads(json.dumps(dataclasses.asdict(jobs[job].config)))
        folder = args.out / name
        manifest_file = folder / "manifest.json"
        manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
        if manifest.get("status") != "finished":
            cfg = load_config(data={**raw, "name": f"probe-{name}"}, overrides=overrides)
            cfg = dataclasses.replace(
                cfg, train=dataclasses.replace(cfg.train, eval_split="val", checkpoint_every=10**6)
            )
            ensure_prepared([dataclasses.replace(jobs[job], config=cfg)], quiet=False)  # fitted teacher units
            manifest = train(cfg, folder, quiet=True)
        s = {k: 100 * v for k, v in manifest["metrics"]["val"].items()}
        print(
            f"{name:20s} val AP {s['AP']:.1f} AP50 {s['AP50']:.1f} APs {s['APs']:.1f} APm {s['APm']:.1f} "
            f"APl {s['APl']:.1f}  ({manifest['wall_seconds']:.0f} s)",
            flush=True,
        )
        run = RunFolder(folder)
        diagnostics = diagnostics_means(run.read_metrics()) if name in LADDER or name in RELATION_LADDER else {}
        if diagnostics:
            print(" " * 21 + "  ".join(f"{k} {v:.2f}" for k, v in diagnostics.items()), flush=True)
        git = (manifest.get("environment") or {}).get("git", {})
        record_variant(
            args.record,
            {
                "name": name,
                "starts_from": job,
                "overrides": overrides,
                "seed": manifest["seed"],
                "iterations": load_config(run.config).train.iterations,
                "val": manifest["metrics"]["val"],
                "diagnostics": diagnostics,
                "wall_seconds": manifest["wall_seconds"],
                "commit": git.get("commit"),
                "local_changes": git.get("dirty"),
            },
        )
    if "factorial" in args.only.split(","):
        print(factorial_table(args.record))


def factorial_table(record_path: Path) -> str:
    """The factorial's val AP by cell and seed from the record, and each factor's main effect: the mean AP of the
    cells with it on minus those with it off, over both seeds (4 cells x 2 seeds each side)."""
    rows = {r["name"]: r for r in json.loads(record_path.read_text())["variants"]}
    cells: dict[tuple[int, int, int], dict[int, float]] = {}
    for name, (fi, pa, ira, seed) in FACTORIAL_CELLS.items():
        if name in rows:
            cells.setdefault((fi, pa, ira), {})[seed] = 100 * rows[name]["val"]["AP"]
    lines = ["imitation | pixel relation | instance relation | val AP seed 0 | seed 1 | mean"]
    for (fi, pa, ira), by_seed in sorted(cells.items()):
        values = [by_seed.get(s) for s in (0, 1)]
        shown = ["–" if v is None else f"{v:.1f}" for v in values]
        known = [v for v in values if v is not None]
        lines.append(f"{fi} | {pa} | {ira} | {shown[0]} | {shown[1]} | {sum(known) / len(known):.1f}")
    for position, factor in enumerate(("imitation", "pixel relation", "instance relation")):
        on = [v for cell, by_seed in cells.items() if cell[position] for v in by_seed.values()]
        off = [v for cell, by_seed in cells.items() if not cell[position] for v in by_seed.values()]
        if on and off:
            lines.append(f"main effect of {factor}: {sum(on) / len(on) - sum(off) / len(off):+.1f} AP")
    return "\n".join(lines)


def record_variant(path: Path, row: dict) -> None:
    """Adds (or replaces) one variant's row in the val record, kept in the order variants were first run."""
    record = json.loads(path.read_text()) if path.is_file() else {"variants": []}
    names = [r["name"] for r in record["variants"]]
    if row["name"] in names:
        record["variants"][names.index(row["name"])] = row
    else:
        record["variants"].append(row)
    atomic_write_json(path, record)


def diagnostics_means(rows: list[dict]) -> dict[str, float]:
    """The run's diagnostics (drkd_viz/distill/diagnostics.py), each averaged over the run's logged rows."""
    keys = sorted(
        {
            k
            for r in rows
            for k in r
            if k.startswith(("grad_loss_", "cos_loss_", "t_entropy_", "t_residual_", "ira_auc_", "ira_row_", "ira_t_"))
        }
    )
    keys = ["clip_factor", "clip_factor_group1", *keys]
    means = {}
    for key in keys:
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            means[key] = sum(values) / len(values)
    return means


if __name__ == "__main__":
    main()
