"""One command from nothing to a report: data, teacher, baseline / feature-imitation / DRKD students
(and ablations, over seeds), test-split evaluation, report.

    drkd-viz pipeline --preset quick|demo|study --out RUNS_DIR

Runs are cached: each run folder records the hash of its resolved config (``pipeline.json``); a
finished run with the same hash is reused, an interrupted one resumed, a run whose config changed
is moved to ``RUNS_DIR/.stale/`` (never deleted) and trained again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drkd_viz.data.synthetic import GENERATOR_VERSION, fingerprint
from drkd_viz.distill.config import ABLATIONS, CONTROLS, active_terms
from drkd_viz.distill.fitted_units import unit_fit
from drkd_viz.engine.config import RunConfig, dump_config, load_config, merge_sections
from drkd_viz.engine.data import ensure_embedded_data
from drkd_viz.engine.fit_units import fit_teacher_units
from drkd_viz.engine.inference import evaluate_run
from drkd_viz.engine.pretrain import PretrainConfig, pretrain_backbone
from drkd_viz.engine.trainer import train
from drkd_viz.errors import UserError
from drkd_viz.experiments.presets import COMPARED, IMITATIONS, PRESETS, PipelinePreset
from drkd_viz.experiments.report import write_report
from drkd_viz.experiments.shipped import install
from drkd_viz.runs import RunFolder, RunsRoot, run_name, stale_place
from drkd_viz.shipped import find_shipped


@dataclass
class Job:
    name: str
    kind: str  # teacher | student
    method: str  # teacher | baseline | feature_imitation | drkd | <ablation>
    seed: int
    config: RunConfig
    folder: Path
    key: str = ""
    status: str = "pending"  # cached | resumed | trained | shipped | evaluated
    pretrain: PretrainConfig | None = None  # how its init_weights are made, when the pipeline makes them


RESULT_NEUTRAL = (("train", "log_every"),)


def config_key(cfg: RunConfig, runs: Path) -> str:
    """A hash of what determines a run's result (the resolved config and, for the embedded dataset, the
    generator version); paths are taken relative to the runs folder, so moving the whole folder keeps
    every run cached."""

    # RESULT_NEUTRAL settings change what is logged, not what is learned
    text = dump_config(cfg, leave_out=RESULT_NEUTRAL).replace(str(runs.resolve()), "<RUNS>")
    if cfg.data.preset:  # a redrawn embedded dataset (new generator version) invalidates the runs trained on it
        text += f"\nembedded generator version {GENERATOR_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pretrain_config(preset: PipelinePreset, backbone: str) -> PretrainConfig:
    return PretrainConfig(backbone=backbone, iterations=preset.pretrain_iterations)


def pretrained_weights(preset: PipelinePreset, runs: Path, backbone: str, dataset_seed: int = 0) -> Path:
    """Where a preset's pre-trained ``backbone`` lives: the name hashes what determines it (its config,
    and the dataset preset, seed and generator version it was trained on), so a change makes a new file
    and every run initialised from it stale."""

    cfg = json.dumps(asdict(pretrain_config(preset, backbone)), sort_keys=True)
    key = hashlib.sha256(f"{cfg} {fingerprint(preset.dataset, dataset_seed)}".encode()).hexdigest()[:12]
    return RunsRoot(runs.resolve()).pretrain / f"{backbone}-{key}.safetensors"


def ensure_prepared(jobs: list[Job], quiet: bool) -> None:
    """Pre-train every backbone that these jobs start from, and fit the teacher graph units a job's L_PR asks for
    (``pr_teacher_units: fitted``), where not there yet (call it for jobs still to train, after their teacher;
    before students run in parallel, so that two workers never write the same file)."""

    for job in jobs:
        settings = job.config.distill
        if settings and settings.pr_teacher_units == "fitted" and "loss_pr" in {t.key for t in active_terms(settings)}:
            fit_teacher_units(settings.teacher, unit_fit(settings), progress=not quiet)
    for job in jobs:
        weights = job.config.train.init_weights
        if not weights or job.pretrain is None or Path(weights).is_file():
            continue
        images, annotations = job.config.data.split_paths("train")
        pretrain_backbone(images, annotations, weights, job.pretrain, progress=not quiet)


def plan(preset: PipelinePreset, runs: Path) -> list[Job]:
    runs = runs.resolve()
    root = RunsRoot(runs)
    data = {"data": {"root": str(root.data), "preset": preset.dataset}}
    teacher_dir = root.run("teacher", subfolder=preset.subfolder)
    teacher_raw = merge_sections(
        merge_sections(preset.base_section("teacher"), preset.teacher), {**data, "name": "teacher"}
    )
    teacher_raw["model"]["family"] = preset.family
    student_base = merge_sections(merge_sections(preset.base_section("student"), preset.student), data)
    student_base["model"]["family"] = preset.family
    pretrain: dict[str, PretrainConfig | None] = {"teacher": None, "student": None}
    if preset.pretrain_iterations:
        for role, raw in (("teacher", teacher_raw), ("student", student_base)):
            backbone = raw["model"]["backbone"]
            pretrain[role] = pretrain_config(preset, backbone)
            weights = pretrained_weights(preset, runs, backbone)
            raw["train"] = {**raw.get("train", {}), "init_weights": str(weights)}
    jobs = [
        Job(
            "teacher",
            "teacher",
            "teacher",
            teacher_raw.get("seed", 0),
            load_config(data=teacher_raw),
            teacher_dir,
            pretrain=pretrain["teacher"],
        )
    ]
    for method in preset.methods:
        seeds = preset.seeds if method in COMPARED else preset.ablation_seeds
        for seed in seeds:
            name = run_name(method, seed)
            raw = merge_sections(student_base, {"name": name, "seed": seed})
            if method in IMITATIONS:
                raw["distill"] = {"method": method, "teacher": str(teacher_dir), **preset.distill}
            elif method in CONTROLS:
                raw["distill"] = {**preset.distill, **CONTROLS[method], "teacher": str(teacher_dir)}
            elif method != "baseline":
                if method not in ABLATIONS:
                    raise UserError(
                        f"unknown method {method!r}; choose baseline, {', '.join(IMITATIONS)} or one of "
                        f"{sorted({*ABLATIONS, *CONTROLS})}"
                    )
                raw["distill"] = {"method": "drkd", "teacher": str(teacher_dir), **preset.distill, **ABLATIONS[method]}
            jobs.append(
                Job(
                    name,
                    "student",
                    method,
                    seed,
                    load_config(data=raw),
                    root.run(method, seed, subfolder=preset.subfolder),
                    pretrain=pretrain["student"],
                )
            )
    teacher_key = config_key(jobs[0].config, runs)
    for job in jobs:
        job.key = student_key(job.config, runs, teacher_key) if job.kind == "student" else teacher_key
    return jobs


def student_key(cfg: RunConfig, runs: Path, teacher_key: str) -> str:
    """A student's config key; a distilled student's also covers its teacher's, so that retraining the
    teacher (a changed teacher config) makes the students it taught stale too."""
    key = config_key(cfg, runs)
    return hashlib.sha256(f"{key} teacher {teacher_key}".encode()).hexdigest()[:16] if cfg.distill else key


def run_state(folder: Path, key: str, split: str) -> str:
    """finished | resumable | stale | new: whether ``folder`` holds the run of config key ``key``, trained and
    evaluated on ``split``, a run of it to resume, a run of another config, or nothing."""
    if not folder.exists():
        return "new"
    run = RunFolder(folder)
    if run.marked_key() != key:
        return "stale"
    finished = run.read_manifest().get("status") == "finished"
    return "finished" if finished and run.is_evaluated(split) else "resumable"


def job_state(job: Job) -> str:
    """finished | resumable | stale | new (see :func:`run_state`; the pipeline evaluates on test)."""
    return run_state(job.folder, job.key, "test")


def ensure_run(
    folder: Path,
    cfg: RunConfig,
    key: str,
    method: str,
    seed: int,
    split: str,
    quiet: bool,
    prepare: Callable[[], None],
    install: Callable[[], None] | None = None,
) -> str:
    """Make ``folder`` hold the run of ``cfg`` (config key ``key``) trained and evaluated on ``split``: the one
    protocol of the pipeline's jobs and the variants. A folder of another config is moved aside (kept), an
    unfinished run resumes, ``install`` (a shipped teacher) replaces training when given, and ``prepare`` runs
    before training (the backbone's pre-training). Returns what it did: cached | shipped | resumed | trained |
    evaluated."""

    state = run_state(folder, key, split)
    if state == "finished":
        return "cached"
    if state == "stale":
        stale = stale_place(folder, time.strftime("%Y%m%d-%H%M%S"))
        stale.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder), str(stale))
    folder.mkdir(parents=True, exist_ok=True)
    run = RunFolder(folder)
    run.mark(key, method, seed)
    if run.read_manifest().get("status") == "finished":
        status = "evaluated"
    elif install is not None:
        install()
        status = "shipped"
    else:
        prepare()
        resume = run.exists()
        train(cfg, folder, resume=resume, quiet=quiet)
        status = "resumed" if resume else "trained"
    if not run.is_evaluated(split):
        evaluate_run(folder, split=split, progress=not quiet)
    return status


def run_job(job: Job, quiet: bool, use_shipped: bool = True) -> None:
    """Train (or resume, or install from the package's shipped weights) and evaluate one run on test."""

    shipped = find_shipped(job.key) if use_shipped and job.kind == "teacher" else None
    job.status = ensure_run(
        job.folder,
        job.config,
        job.key,
        job.method,
        job.seed,
        "test",
        quiet,
        prepare=lambda: ensure_prepared([job], quiet),
        install=None if shipped is None else lambda: install(shipped, job.folder, job.config),
    )


def _run_job_in_worker(job: Job) -> str:
    """A student job in a worker process; returns its status (the parent's ``Job`` is a copy)."""
    import torch

    torch.set_num_threads(job.config.train.threads or 1)  # evaluation too: workers must not oversubscribe cores
    run_job(job, quiet=True)
    return job.status


def _run_in_parallel(jobs: list[Job], workers: int, bar: Any) -> None:
    """Run jobs ``workers`` at a time in spawned processes (fork is unsafe once torch has threads)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        running = {pool.submit(_run_job_in_worker, job): job for job in jobs}
        while running:
            busy = sorted(job.name for future, job in running.items() if future.running())
            bar.set_postfix_str(", ".join(busy[:workers]))
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                job.status = future.result()  # re-raises a worker's error (the run folder records it too)
                bar.update()


def preset_named(name: str) -> PipelinePreset:
    """One of the presets under configs/presets/."""
    if name not in PRESETS:
        raise UserError(f"unknown pipeline preset {name!r}; choose one of {sorted(PRESETS)}, or name a file")
    return PRESETS[name]


def run_pipeline(
    preset_name: str | PipelinePreset,
    runs: str | os.PathLike,
    quiet: bool = False,
    jobs: int | None = None,
    use_shipped: bool = True,
) -> dict[str, Any]:
    """Run (or reuse) every job of a preset and write the report; returns the report dict.

    ``jobs``: students trained at once (default: the preset's ``parallel_jobs``). Each run's result depends
    only on its config (its thread count included), not on how many run beside it. ``use_shipped``: a
    teacher whose config matches a model shipped with the package is installed from it, not trained."""
    from tqdm.auto import tqdm

    preset = preset_named(preset_name) if isinstance(preset_name, str) else preset_name
    runs = Path(runs).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    planned = plan(preset, runs)
    ensure_embedded_data(planned[0].config.data, progress=not quiet)
    workers = preset.parallel_jobs if jobs is None else jobs
    if workers < 1:
        raise UserError(f"jobs must be at least 1, got {workers}")
    bar = tqdm(total=len(planned), desc=f"pipeline {preset.name}", unit="run", disable=quiet, position=0)
    # the teacher first (students need it), then the students: those to train in worker processes when
    # more than one can run at once, the rest (cached ones, or all when one at a time) here
    # seed-major, the compared arms first: a study stopped part-way holds complete paired seeds
    todo = [job for job in planned[1:] if job_state(job) != "finished"]
    todo.sort(key=lambda job: (job.method not in COMPARED, job.seed))
    parallel = todo if workers > 1 and len(todo) > 1 else []
    for job in planned:
        if job not in parallel:
            bar.set_postfix_str(job.name)
            run_job(job, quiet=quiet, use_shipped=use_shipped)
            bar.update()
    if parallel:
        ensure_prepared(parallel, quiet)  # here, once: workers sharing a backbone must not race to write it
        _run_in_parallel(parallel, min(workers, len(parallel)), bar)
    bar.close()
    return write_report(preset, planned, runs, wall_seconds=time.time() - started)
