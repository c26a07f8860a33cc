"""The training loop, after torchvision's references/detection: start (data, run folder, model, objective,
optimiser, resume), one iteration at a time (:func:`train_step`), finish (export, evaluation, manifest).

Runs unchanged on one CPU, one GPU, or N processes under ``torchrun`` (DistributedDataParallel).
What is minimised comes from an :class:`~drkd_viz.distill.objective.Objective`: plain detection,
or a distillation method that adds its own loss terms and trainable modules.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drkd_viz.distill.diagnostics import step_gradient_report, term_gradients
from drkd_viz.distill.distiller import build_objective
from drkd_viz.distill.objective import Objective
from drkd_viz.engine import checkpoint as ckpt_io
from drkd_viz.engine.config import OptimConfig, RunConfig, dump_config, load_config
from drkd_viz.engine.data import IterationBatches, ensure_embedded_data, open_split, training_loader
from drkd_viz.engine.distributed import DistInfo, barrier, broadcast_object, gather_objects, init_distributed, shutdown
from drkd_viz.engine.inference import class_table, evaluate_model, export_student, to_device
from drkd_viz.engine.schedule import lr_factor
from drkd_viz.errors import UserError
from drkd_viz.models.factory import build_detector
from drkd_viz.models.weights import load_weights
from drkd_viz.runs import MetricsLog, RunFolder, environment_info, now
from drkd_viz.utils.io import atomic_write_text


class TrainingDiverged(UserError):
    """A loss term became NaN or infinite; the run stops and keeps its last good checkpoint."""


def resolve_device(kind: str) -> torch.device:
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is 'cuda' but no CUDA device is available; use 'cpu' or 'auto'")
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(kind)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def architecture(cfg: RunConfig) -> dict[str, Any]:
    """What a checkpoint must match to be loaded: the detector and the method's modules."""
    distill = cfg.distill.to_dict() if cfg.distill else None
    return {"model": cfg.model.to_dict(), "method": distill["method"] if distill else "none", "distill": distill}


def _prepare_run_folder(run: RunFolder, cfg: RunConfig, resume: bool, info: DistInfo) -> None:
    """Rank 0 checks the folder and writes the resolved config; every rank learns the outcome
    (so a refusal stops all processes instead of leaving the others waiting)."""
    problem = None
    if info.is_main:
        if run.manifest.is_file() and not resume:
            status = run.read_manifest().get("status")
            problem = (
                f"{run.path} already holds a run (status: {status}); pass --resume to continue it, "
                "or choose another --out"
            )
        elif resume and run.config.is_file() and architecture(load_config(run.config)) != architecture(cfg):
            problem = (
                f"--resume: the config differs from the one {run.path} was started with "
                f"(model or distill section); resume with {run.config}"
            )
        if problem is None:
            run.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run.config, dump_config(cfg))
    problem = broadcast_object(info, problem)
    if problem:
        raise UserError(problem)


@dataclass
class Session:
    """What one run holds while it trains: built by :func:`_start`, advanced by :func:`train_step`, closed by
    :func:`_finish`."""

    cfg: RunConfig
    run: RunFolder
    device: torch.device
    info: DistInfo
    train_set: Any
    objective: Objective
    model: torch.nn.Module  # the objective, wrapped in DistributedDataParallel under torchrun
    groups: list[list[torch.nn.Parameter]]  # optimiser groups, each clipped on its own
    student_params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    use_amp: bool
    start: int  # the first iteration to run (0, or the resumed checkpoint's)
    loader: Any
    log: MetricsLog | None


def train(cfg: RunConfig, out: str | os.PathLike, resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train ``cfg`` into the run folder ``out``; returns the final manifest."""
    device = resolve_device(cfg.train.device)
    info = init_distributed(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    caller_threads = torch.get_num_threads()  # restored at the end: a run's thread count is its own
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    run = RunFolder(Path(out))
    started = time.time()
    owns_run = False
    try:
        cfg, train_set = _open_training_data(cfg, info, quiet)
        _prepare_run_folder(run, cfg, resume, info)
        owns_run = True  # from here on, a failure is recorded in this run's manifest
        session = _start(cfg, run, train_set, resume, device, info)
        _loop(session, quiet)
        return _finish(session, started, quiet)
    except TrainingDiverged:
        raise
    except KeyboardInterrupt:
        if info.is_main and owns_run:
            run.update_manifest(status="interrupted", previous_wall_seconds=_wall(run, started))
        raise
    except BaseException as exc:
        if info.is_main and owns_run:
            run.update_manifest(
                status="failed", error=f"{type(exc).__name__}: {exc}", previous_wall_seconds=_wall(run, started)
            )
        raise
    finally:
        torch.set_num_threads(caller_threads)
        shutdown(info)


def _open_training_data(cfg: RunConfig, info: DistInfo, quiet: bool) -> tuple[RunConfig, Any]:
    """The training split (the embedded dataset generated once, on rank 0), and the config with the number of
    classes taken from it."""
    if info.is_main:
        ensure_embedded_data(cfg.data, progress=not quiet)
    barrier(info)
    train_set = open_split(cfg.data, "train", train=True)
    if cfg.model.num_classes == 0:
        cfg = replace(cfg, model=replace(cfg.model, num_classes=train_set.num_classes))
    elif cfg.model.num_classes != train_set.num_classes:
        raise UserError(
            f"model.num_classes is {cfg.model.num_classes} but the dataset has "
            f"{train_set.num_classes - 1} categories (+1 background = {train_set.num_classes}); "
            "remove model.num_classes to take it from the data"
        )
    return cfg, train_set


def _start(
    cfg: RunConfig, run: RunFolder, train_set: Any, resume: bool, device: torch.device, info: DistInfo
) -> Session:
    """The model, objective and optimiser, resumed from the newest checkpoint when asked, and the data stream."""
    if info.is_main:
        run.update_manifest(
            name=cfg.name,
            status="running",
            seed=cfg.seed,
            device=str(device),
            world_size=info.world,
            started=run.read_manifest().get("started", now()),
            resumed=resume,
            environment=environment_info(),
            formula=None,
        )
    seed_everything(cfg.seed, cfg.train.deterministic)
    student = build_detector(cfg.model)
    if cfg.train.init_weights:
        load_weights(student, cfg.train.init_weights, skip_mismatched=cfg.train.skip_mismatched)
    objective: Objective = build_objective(student, cfg.distill, cfg.model, device).to(device)
    groups = objective.parameter_groups()  # clipped one by one (distill.clip)
    student_params = [p for p in objective.student.parameters() if p.requires_grad]
    optimizer = build_optimizer(groups, cfg.optim)
    total = cfg.train.iterations
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg.optim, total))
    use_amp = cfg.optim.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start = 0
    latest = ckpt_io.latest_checkpoint(run.checkpoints) if resume else None
    if latest is not None:
        weights, state = ckpt_io.load_checkpoint(latest, architecture(cfg))
        objective.load_trainable_state(weights)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        ckpt_io.set_rng_state(state["rng"][info.rank])
        start = latest.iteration
    if info.is_main:
        run.update_manifest(formula=objective.formula(), resumed_from=start if latest else None)

    model = objective
    if info.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None
        )
    batches = IterationBatches(len(train_set), cfg.train.batch_size, total, cfg.seed, start, info.rank, info.world)
    loader = training_loader(train_set, batches, cfg.data.workers)
    log = MetricsLog(run, resume_from=start if latest else None) if info.is_main else None
    return Session(
        cfg, run, device, info, train_set, objective, model, groups, student_params, optimizer, scheduler, scaler,
        use_amp, start, loader, log,
    )  # fmt: skip


def _save(s: Session, iteration: int, final: bool = False) -> None:
    """A checkpoint every rank agrees on: weights, optimiser, schedule, AMP scale and every rank's RNG state."""
    rng = gather_objects(s.info, ckpt_io.rng_state())
    if s.info.is_main:
        state = {
            "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict(),
            "scaler": s.scaler.state_dict(),
            "rng": rng,
            "iteration": iteration,
        }
        ckpt_io.save_checkpoint(
            s.run.checkpoints, iteration, s.objective.trainable_state(), state, architecture(s.cfg), final=final
        )
        ckpt_io.prune_checkpoints(s.run.checkpoints, s.cfg.train.keep_checkpoints)
    barrier(s.info)


def _loop(s: Session, quiet: bool) -> None:
    """Iterations ``start … total-1``, each logged, with periodic checkpoints."""
    from tqdm.auto import tqdm

    cfg, total = s.cfg, s.cfg.train.iterations
    s.objective.train()
    bar = tqdm(
        total=total, initial=s.start, desc=cfg.name, unit="it", disable=quiet or not s.info.is_main, dynamic_ncols=True
    )
    tick = time.perf_counter()
    for iteration, (images, targets) in zip(range(s.start, total), s.loader, strict=False):
        data_time = time.perf_counter() - tick
        lr = s.optimizer.param_groups[0]["lr"]
        step = train_step(s, iteration, images, targets)
        step_time = time.perf_counter() - tick
        values = _mean_over_ranks(
            {"loss": step.loss.detach(), **{k: v.detach() for k, v in step.terms.items()}}, s.info
        )
        values.update(s.objective.metrics())  # unweighted per-level diagnostics: logged, not optimised
        values.update(step.diagnostics)
        record = {
            "iter": iteration + 1,
            **values,
            "lr": lr,
            "grad_norm": step.grad_norm,
            "clip_factor": step.clip_factor,
            "time": round(step_time, 4),
            "data_time": round(data_time, 4),
            "images_per_s": round(cfg.train.batch_size / step_time, 2),
        }
        if s.log is not None:
            s.log.log(record)
        bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{lr:.2g}", img_s=f"{record['images_per_s']:.1f}")
        bar.update()
        if (iteration + 1) % cfg.train.checkpoint_every == 0 and iteration + 1 < total:
            _save(s, iteration + 1)
        tick = time.perf_counter()
    bar.close()


@dataclass
class Step:
    """What one iteration reports."""

    loss: torch.Tensor  # L = L_det + Σ λ·L_term
    terms: dict[str, torch.Tensor]  # L_det's parts and each weighted distillation term
    grad_norm: float | None  # the first parameter group's (the student's) gradient norm before clipping
    clip_factor: float | None  # what clipping scaled that gradient by (1: it did not fire)
    diagnostics: dict[str, float] = field(default_factory=dict)  # per-term gradients, other groups' clipping


def train_step(s: Session, iteration: int, images: list[torch.Tensor], targets: list[dict]) -> Step:
    """One iteration: L = L_det + Σ λ·L_term (the objective's terms), its gradient, clipping, the update."""
    cfg, device, objective, optimizer, scaler = s.cfg, s.device, s.objective, s.optimizer, s.scaler
    images, targets = [i.to(device, non_blocking=True) for i in images], to_device(targets, device)
    objective.set_progress(iteration / max(cfg.train.iterations - 1, 1))
    watched = bool(cfg.train.log_every) and (iteration + 1) % cfg.train.log_every == 0
    objective.watch(watched)
    with torch.autocast(device.type, enabled=s.use_amp):
        losses = s.model(images, targets)
    _check_finite(losses, iteration + 1, s.run, s.info)
    loss = sum(losses.values())

    optimizer.zero_grad(set_to_none=True)
    # each distillation term's own gradient on the student, taken before the real backward (which gives their
    # sum with L_det's); not under DDP, whose gradient hooks expect one backward per step
    extra = {k: losses[k] for k in objective.distillation_terms if k in losses}
    term_grads = None
    scale = 1.0
    if watched and extra and not s.info.enabled:
        scale = scaler.get_scale() if s.use_amp else 1.0
        term_grads = term_gradients({k: v * scale for k, v in extra.items()}, s.student_params)
    scaler.scale(loss).backward()
    if cfg.optim.clip_grad_norm or term_grads is not None:
        scaler.unscale_(optimizer)
    step = Step(loss, losses, grad_norm=None, clip_factor=None)
    if term_grads is not None:
        step.diagnostics = step_gradient_report(s.student_params, term_grads, scale)
    if cfg.optim.clip_grad_norm:
        _clip(s, step)
    scaler.step(optimizer)
    scaler.update()
    s.scheduler.step()
    return step


def _clip(s: Session, step: Step) -> None:
    """Clip each parameter group's gradient norm; the first group's (the student's, or everything's) norm and
    factor go in ``step``, the others' in its diagnostics."""
    limit = s.cfg.optim.clip_grad_norm
    for i, group in enumerate(s.groups):
        norm = float(torch.nn.utils.clip_grad_norm_(group, limit))
        factor = min(1.0, limit / (norm + 1e-6))  # what clip_grad_norm_ applied
        if i == 0:
            step.grad_norm, step.clip_factor = norm, factor
        else:
            step.diagnostics[f"grad_norm_group{i}"], step.diagnostics[f"clip_factor_group{i}"] = norm, factor


def _finish(s: Session, started: float, quiet: bool) -> dict[str, Any]:
    """The final checkpoint, the exported student, its evaluation and the finished manifest."""
    cfg, run, info, total = s.cfg, s.run, s.info, s.cfg.train.iterations
    _save(s, total, final=True)
    # replicas must end identical under DDP: record every rank's weight checksum
    checksums = gather_objects(info, _checksum(s.objective.trainable_state()))
    if info.is_main:
        export_student(s.objective.trainable_state(), cfg, class_table(s.train_set), run.export)
        run.update_manifest(status="trained", trained_at=now(), replica_checksums=checksums)

    metrics = None
    if cfg.train.eval_split != "none":
        eval_set = open_split(cfg.data, cfg.train.eval_split, train=False)
        result = evaluate_model(
            s.objective.student,
            eval_set,
            run.eval_dir(cfg.train.eval_split),
            s.device,
            cfg.train.eval_batch_size,
            info,
            progress=not quiet,
        )
        metrics = {cfg.train.eval_split: result.stats}
        if s.log is not None:
            s.log.log_eval(cfg.train.eval_split, result.stats, total)
    if s.log is not None:
        s.log.close()
    manifest = {}
    if info.is_main:
        manifest = run.update_manifest(
            status="finished",
            finished=now(),
            wall_seconds=round(time.time() - started, 1) + run.read_manifest().get("previous_wall_seconds", 0.0),
            metrics=metrics,
        )
    return broadcast_object(info, manifest)


def build_optimizer(groups: list[list[torch.nn.Parameter]], cfg: OptimConfig) -> torch.optim.Optimizer:
    """One optimiser over parameter ``groups`` (a list of parameter lists), all at the config's settings."""
    params = [{"params": group} for group in groups if group]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _checksum(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _wall(run: RunFolder, started: float) -> float:
    return round(time.time() - started + run.read_manifest().get("previous_wall_seconds", 0.0), 1)


def _mean_over_ranks(values: dict[str, torch.Tensor], info: DistInfo) -> dict[str, float]:
    stacked = torch.stack([v.float() for v in values.values()])
    if info.enabled:
        torch.distributed.all_reduce(stacked)
        stacked /= info.world
    return {k: float(v) for k, v in zip(values, stacked.tolist(), strict=True)}


def _check_finite(losses: dict[str, torch.Tensor], iteration: int, run: RunFolder, info: DistInfo) -> None:
    """Stop before a non-finite loss reaches the weights; under torchrun every rank stops together."""
    finite = torch.stack([torch.isfinite(v.detach()).all() for v in losses.values()]).float()
    if info.enabled:
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    if bool(finite.all()):
        return
    bad = [name for name, ok in zip(losses, finite.tolist(), strict=True) if not ok]
    last = ckpt_io.latest_checkpoint(run.checkpoints)
    kept = f"the last good checkpoint is {last.path}" if last else "no checkpoint was written before it"
    message = (
        f"training diverged at iteration {iteration}: loss term {', '.join(repr(b) for b in bad)} is "
        f"not finite ({float(losses[bad[0]].detach())}); {kept}. Lower optim.lr, lengthen optim.warmup_iters or set "
        "optim.clip_grad_norm, then start again (or --resume from that checkpoint)."
    )
    if info.is_main:
        run.update_manifest(status="diverged", error=message)
    raise TrainingDiverged(message)
