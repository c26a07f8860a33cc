"""The embedded default dataset, written to a folder: every split drawn (in parallel, deterministically), its
COCO annotations, statistics and datasheet, moved into place in one step.

    generate_dataset("runs/demo/data", preset="demo", seed=0)   # the layout of drkd_viz.data.synthetic
    is_complete("runs/demo/data", "demo", 0)                    # already there, same settings?
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from tqdm.auto import tqdm

from drkd_viz.data.datasheet import write_datasheet
from drkd_viz.data.layout import split_files
from drkd_viz.data.statistics import dataset_statistics, same_class_overlaps
from drkd_viz.data.synthetic import (
    GENERATOR_VERSION,
    SPLITS,
    SyntheticPreset,
    coco_dict,
    draw_and_save,
    fingerprint,
    resolve_preset,
)
from drkd_viz.errors import UserError
from drkd_viz.utils.io import atomic_write_json


def is_complete(out_dir: Path, preset: str | SyntheticPreset, seed: int) -> bool:
    stats_file = Path(out_dir) / "stats.json"
    if not stats_file.is_file():
        return False
    try:
        return json.loads(stats_file.read_text()).get("fingerprint") == fingerprint(preset, seed)
    except json.JSONDecodeError:
        return False


def _older_version_of(out: Path, preset: str, seed: int) -> bool:
    """True if ``out`` holds this (preset, seed) drawn by an older generator: safe to redraw."""
    try:
        stats = json.loads((out / "stats.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (
        stats.get("preset") == preset
        and stats.get("seed") == seed
        and stats.get("fingerprint") != fingerprint(preset, seed)
    )


def generate_dataset(
    out_dir: str | os.PathLike,
    preset: str | SyntheticPreset = "demo",
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    reference: dict | None = None,
) -> dict:
    """Write the embedded dataset to ``out_dir`` and return its statistics.

    ``preset`` is a name of :data:`PRESETS` or a :class:`SyntheticPreset` (calibration variants). If
    ``out_dir`` already holds the same (preset settings, seed, generator version), nothing is redrawn.
    The dataset is built in a temporary sibling folder and moved into place at the end, so an
    interrupted run never leaves a half-written dataset behind. ``reference``: the numbers of a strong teacher
    on this data, for the datasheet (:func:`drkd_viz.shipped.reference_teacher`).
    """
    spec = resolve_preset(preset)
    out = Path(out_dir)
    if is_complete(out, spec, seed) and not overwrite:
        return json.loads((out / "stats.json").read_text())
    if out.exists() and any(out.iterdir()) and not overwrite and not _older_version_of(out, spec.name, seed):
        raise UserError(
            f"{out} exists and does not hold the {spec.name!r} dataset with seed {seed}; "
            "choose another --out or pass --overwrite"
        )
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    jobs = []
    for split in SPLITS:
        split_files(tmp, split)[0].mkdir(parents=True)
        jobs += [(seed, split, i, spec, str(split_files(tmp, split)[0])) for i in range(spec.split_sizes[split])]

    workers = workers or min(os.cpu_count() or 1, 8)
    bar = tqdm(total=len(jobs), desc=f"drawing {spec.name} dataset", unit="img", disable=not progress)
    results: dict[str, list[dict]] = {s: [] for s in SPLITS}
    if workers == 1:
        for job in jobs:
            results[job[1]].append(draw_and_save(job))
            bar.update()
    else:
        # spawn: never fork a process that may hold torch's thread pools
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for job, rec in zip(jobs, pool.map(draw_and_save, jobs, chunksize=16), strict=True):
                results[job[1]].append(rec)
                bar.update()
    bar.close()

    coco = {split: coco_dict(results[split], split, spec, seed) for split in SPLITS}
    for split in SPLITS:
        atomic_write_json(split_files(tmp, split)[1], coco[split], indent=None)
    stats = dataset_statistics(coco)
    stats.update(
        preset=spec.name,
        seed=seed,
        generator_version=GENERATOR_VERSION,
        generator_settings=spec.settings(),
        same_class_overlaps=same_class_overlaps(coco["test"]),
        fingerprint=fingerprint(spec, seed),
        generation_seconds=round(time.perf_counter() - started, 2),
    )
    write_datasheet(tmp, stats, coco, spec, reference)
    atomic_write_json(tmp / "stats.json", stats)  # written last: marks the folder complete
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return stats
