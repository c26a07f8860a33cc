"""Checkpoints: weights in safetensors, optimiser/scheduler/RNG state beside them, written atomically.

    RUN/checkpoints/iter_000200/
        model.safetensors   student + the method's trainable modules (never the frozen teacher)
        state.pt            optimiser, lr scheduler, AMP scaler, RNG states, iteration (weights_only-safe)
        meta.json           iteration, architecture fingerprint, sha256 of both files

A checkpoint folder is built under a temporary name and renamed into place, so a reader (or a
resumed run) never sees a half-written one. Loading re-hashes both files and compares the
architecture fingerprint with the current run's; a mismatch is refused with a clear message.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from drkd_viz.errors import UserError
from drkd_viz.models.weights import read_safetensors
from drkd_viz.utils.io import atomic_write_json

WEIGHTS_FILE = "model.safetensors"  # a checkpoint's weights (what inference and inspection read)
STATE_FILE = "state.pt"


class CheckpointError(UserError):
    """A checkpoint that must not be used: corrupt, tampered with, or from another architecture."""


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def architecture_fingerprint(description: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Checkpoint:
    path: Path
    iteration: int
    meta: dict[str, Any]


def _name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def save_checkpoint(
    folder: Path,
    iteration: int,
    weights: dict[str, torch.Tensor],
    state: dict[str, Any],
    architecture: dict[str, Any],
    final: bool = False,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _name(iteration)
    tmp = folder / f".{_name(iteration)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / WEIGHTS_FILE))
    torch.save(state, tmp / STATE_FILE)
    meta = {
        "iteration": iteration,
        "final": final,
        "architecture": architecture_fingerprint(architecture),
        "architecture_description": architecture,
        "sha256": {name: sha256_file(tmp / name) for name in (WEIGHTS_FILE, STATE_FILE)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(tmp / "meta.json", meta)
    for name in (WEIGHTS_FILE, STATE_FILE):
        fd = os.open(tmp / name, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def list_checkpoints(folder: Path) -> list[Checkpoint]:
    """Complete checkpoints (with meta.json), oldest first."""
    found = []
    if folder.is_dir():
        for path in sorted(folder.glob("iter_*")):
            meta_file = path / "meta.json"
            if path.is_dir() and meta_file.is_file():
                try:
                    meta = json.loads(meta_file.read_text())
                except json.JSONDecodeError:
                    continue
                found.append(Checkpoint(path, int(meta["iteration"]), meta))
    return sorted(found, key=lambda c: c.iteration)


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Keep the ``keep`` newest periodic checkpoints and every final one; remove leftovers of crashes."""
    periodic = [c for c in list_checkpoints(folder) if not c.meta.get("final")]
    for ckpt in periodic[: max(len(periodic) - keep, 0)]:
        shutil.rmtree(ckpt.path, ignore_errors=True)
    for leftover in folder.glob(".iter_*.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def verify_checkpoint(ckpt: Checkpoint, architecture: dict[str, Any] | None) -> None:
    """Refuse a checkpoint whose files changed since it was written, or that belongs to another model."""
    for name, recorded in ckpt.meta.get("sha256", {}).items():
        path = ckpt.path / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {ckpt.path} is incomplete: {name} is missing")
        actual = sha256_file(path)
        if actual != recorded:
            raise CheckpointError(
                f"checkpoint {ckpt.path} was modified or is corrupt: {name} has sha256 {actual[:16]}… but "
                f"meta.json records {recorded[:16]}…. Delete this checkpoint folder to resume from an earlier one."
            )
    if architecture is not None and ckpt.meta.get("architecture") != architecture_fingerprint(architecture):
        theirs = ckpt.meta.get("architecture_description", {})
        raise CheckpointError(
            f"checkpoint {ckpt.path} belongs to another architecture and cannot be loaded into this run:\n"
            f"  checkpoint: {_describe(theirs)}\n  this run:   {_describe(architecture)}\n"
            "Use the config the checkpoint was trained with, or start a new run folder."
        )


def _describe(arch: dict[str, Any]) -> str:
    model = arch.get("model", {})
    return (
        f"{model.get('family')} / {model.get('backbone')}-FPN{model.get('fpn_channels')}, "
        f"{model.get('num_classes')} classes, method {arch.get('method', 'none')}"
    )


def load_checkpoint(ckpt: Checkpoint, architecture: dict[str, Any] | None) -> tuple[dict[str, torch.Tensor], dict]:
    verify_checkpoint(ckpt, architecture)

    weights = read_safetensors(ckpt.path / WEIGHTS_FILE)
    try:
        state = torch.load(ckpt.path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # the safe loader refuses anything but tensors and plain containers
        raise CheckpointError(
            f"cannot read {ckpt.path / STATE_FILE}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}. "
            "It matches its checksum, so it was written this way: it is not a drkd_viz training state. "
            f"Remove {ckpt.path} to resume from the checkpoint before it, or train the run again."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{ckpt.path / STATE_FILE} holds a {type(state).__name__}, not a training state")
    return weights, state


def latest_checkpoint(folder: Path) -> Checkpoint | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def final_weights(checkpoints: Path) -> dict[str, torch.Tensor]:
    """The weights of the newest checkpoint in ``checkpoints`` (a run's final ones once it finished), after checking
    its files against their recorded hashes."""

    ckpt = latest_checkpoint(checkpoints)
    if ckpt is None:
        raise UserError(f"{checkpoints.parent} has no checkpoint yet")
    verify_checkpoint(ckpt, None)
    return read_safetensors(ckpt.path / WEIGHTS_FILE)
