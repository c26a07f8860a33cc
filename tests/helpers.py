"""Shared helpers for the tests (pytest puts this folder on sys.path)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml


def tiny(root: Path, **sections) -> dict:
    """A config that trains in about a second on the quick dataset."""
    cfg = {
        "name": "tiny",
        "seed": 3,
        "data": {"root": str(root), "max_eval_images": 12},
        "model": {
            "family": "faster_rcnn",
            "backbone": "resnet10",
            "fpn_channels": 32,
            "box_head_width": 64,
            "min_size": 128,
            "max_size": 160,
        },
        "optim": {"lr": 0.01, "warmup_iters": 3},
        "train": {"iterations": 8, "batch_size": 2, "checkpoint_every": 4, "eval_batch_size": 6, "threads": 1},
    }
    for section, values in sections.items():
        cfg[section] = {**cfg.get(section, {}), **values} if isinstance(values, dict) else values
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def polling_notebook_client():
    """nbclient's NotebookClient with a fix for a known hang (jupyter/nbclient#312: a cell that displays
    ipywidgets sometimes blocks until the cell timeout because the shell reply is waited for in one long
    blocking poll). We poll the shell channel in short slices instead, as the proposed fix (#311) does."""
    import asyncio
    from queue import Empty
    from time import monotonic

    from nbclient import NotebookClient
    from nbclient.util import ensure_async

    class PollingNotebookClient(NotebookClient):
        async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
            channel = self.kc.shell_channel
            original = channel.get_msg

            async def get_msg(timeout=None):
                deadline = None if timeout is None else monotonic() + timeout
                while True:
                    try:
                        return await ensure_async(original(timeout=0.05))
                    except Empty:
                        if deadline is not None and monotonic() >= deadline:
                            raise
                        await asyncio.sleep(0.01)

            channel.get_msg = get_msg
            try:
                return await super()._async_poll_for_reply(
                    msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive
                )
            finally:
                channel.get_msg = original

    return PollingNotebookClient


def copy_repository(source: Path, dest: Path) -> Path:
    """Copy what git tracks or would track in ``source`` (nothing it ignores: no .venv, runs, build output)
    into ``dest``, as a clone of the working tree would hold it."""
    files = subprocess.run(
        ["git", "-C", str(source), "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in files:
        if (source / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, dest / name)
    return dest


def add_a_study(quick_runs: Path, runs: Path) -> dict:
    """``runs``: the quick runs at the top (where the demo keeps its own) and a ``study`` report whose runs live in
    ``study/`` under seeds 1 and 2 (copies of the quick ones), as `drkd-viz pipeline --preset study` lays them out.
    Returns the study report."""
    skip = shutil.ignore_patterns("tensorboard")  # the DRKD run's units come from its checkpoint
    shutil.copytree(quick_runs, runs, ignore=skip)
    report = json.loads((quick_runs / "reports" / "quick" / "report.json").read_text())
    report["preset"], report["seeds"] = "study", [1, 2]
    for name, entry in report["models"].items():
        if name == "teacher":
            shutil.copytree(quick_runs / "teacher", runs / "study" / "teacher", ignore=skip)
            entry["runs"] = ["study/teacher"]
            continue
        for seed in (1, 2):
            shutil.copytree(quick_runs / f"{name}-s0", runs / "study" / f"{name}-s{seed}", ignore=skip)
        entry["runs"], entry["seeds"] = [f"study/{name}-s1", f"study/{name}-s2"], [1, 2]
        entry["per_seed"] = {"1": entry["per_seed"]["0"], "2": entry["per_seed"]["0"]}
    (runs / "reports" / "study").mkdir(parents=True)
    (runs / "reports" / "study" / "report.json").write_text(json.dumps(report))
    return report


def random_features(levels, channels: int, batch: int = 2, size: int = 64, seed: int = 0) -> dict:
    """Level -> B x C x (size / stride) x (size / stride) Gaussian FPN features (P<k> has stride 2**k), seeded."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return {
        lv: torch.randn(batch, channels, size // 2 ** int(lv[1:]), size // 2 ** int(lv[1:]), generator=g)
        for lv in levels
    }
