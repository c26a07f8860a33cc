"""Learning-rate schedule: linear warm-up, then step decay or cosine annealing (per iteration)."""

from __future__ import annotations

import math
from collections.abc import Callable

from drkd_viz.engine.config import OptimConfig


def lr_factor(cfg: OptimConfig, total: int) -> Callable[[int], float]:
    """Multiplier of the base lr at iteration ``it`` (0-based), for ``torch.optim.lr_scheduler.LambdaLR``."""
    milestones = sorted(int(m * total) if m <= 1 else int(m) for m in cfg.milestones)

    def factor(it: int) -> float:
        if cfg.schedule == "step":
            value = cfg.gamma ** sum(it >= m for m in milestones)
        else:
            progress = min(max(it - cfg.warmup_iters, 0) / max(total - cfg.warmup_iters, 1), 1.0)
            value = cfg.min_lr_factor + (1 - cfg.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        if it < cfg.warmup_iters:
            alpha = it / cfg.warmup_iters
            value *= cfg.warmup_factor * (1 - alpha) + alpha
        return value

    return factor
