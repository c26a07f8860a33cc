"""Datasets and a resumable, rank-aware batch order for training.

The batch of iteration ``i`` is a pure function of (seed, i): samples are drawn from a fresh
permutation every epoch, and each sample carries its own augmentation seed. Resuming at any
iteration therefore replays exactly the same data, and N processes with global batch B see the
same samples as one process with batch B (each takes its contiguous share).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from drkd_viz.data.coco import CocoDetection, build_transforms, collate_detection
from drkd_viz.data.embedded import generate_dataset, is_complete
from drkd_viz.data.synthetic import GENERATOR_VERSION
from drkd_viz.engine.config import DataConfig
from drkd_viz.errors import UserError
from drkd_viz.shipped import reference_teacher


def ensure_embedded_data(cfg: DataConfig, progress: bool = True) -> None:
    """Generate the embedded dataset into ``cfg.root`` if the config names a preset and it is absent."""
    if cfg.preset and cfg.root and not is_complete(cfg.root, cfg.preset, cfg.dataset_seed):
        reference = reference_teacher(cfg.preset, GENERATOR_VERSION)  # how hard the data is, for its datasheet
        generate_dataset(cfg.root, preset=cfg.preset, seed=cfg.dataset_seed, progress=progress, reference=reference)


def open_split(cfg: DataConfig, split: str, train: bool) -> CocoDetection:
    images, annotations = cfg.split_paths(split)
    transforms = (
        build_transforms(train=True, hflip_prob=cfg.hflip_prob, shorter_sides=cfg.shorter_sides, max_side=cfg.max_side)
        if train
        else None
    )
    dataset = CocoDetection(images, annotations, transforms=transforms, skip_empty=train)
    limit = cfg.max_train_images if train else cfg.max_eval_images
    if limit is not None:
        dataset.ids = dataset.ids[:limit]
    if len(dataset) == 0:
        raise UserError(f"the {split} split ({annotations}) has no usable images")
    return dataset


class SeededSamples(Dataset):
    """Indexes a dataset with (index, seed): random transforms run under that seed, so an
    augmented sample does not depend on the process, worker or order it is loaded in."""

    def __init__(self, dataset: CocoDetection):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class IterationBatches(Sampler):
    """Yields this rank's share of the global batch for iterations ``start … total-1``."""

    def __init__(
        self, size: int, global_batch: int, total: int, seed: int, start: int = 0, rank: int = 0, world: int = 1
    ):
        if global_batch % world:
            raise UserError(f"train.batch_size ({global_batch}) must be divisible by the number of processes ({world})")
        self.size, self.global_batch, self.total, self.seed = size, global_batch, total, seed
        self.start, self.rank, self.world = start, rank, world
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.size)}
        return self._perms[epoch]

    def batch(self, iteration: int) -> list[tuple[int, int]]:
        share = self.global_batch // self.world
        out = []
        for j in range(self.rank * share, (self.rank + 1) * share):
            position = iteration * self.global_batch + j
            index = int(self._perm(position // self.size)[position % self.size])
            sample_seed = int(np.random.SeedSequence([self.seed, iteration, j]).generate_state(1)[0])
            out.append((index, sample_seed))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for iteration in range(self.start, self.total):
            yield self.batch(iteration)

    def __len__(self) -> int:
        return self.total - self.start


def training_loader(dataset: CocoDetection, batches: IterationBatches, workers: int) -> DataLoader:
    return DataLoader(
        SeededSamples(dataset),
        batch_sampler=batches,
        collate_fn=collate_detection,
        num_workers=workers,
        # its own generator: the loader must not draw from the global RNG, whose state checkpoints restore
        generator=torch.Generator().manual_seed(batches.seed),
    )
