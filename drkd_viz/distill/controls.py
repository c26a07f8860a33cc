"""Controls that separate relation knowledge from imitation (``distill.rotate_teacher``, ``distill.shuffle_relations``).

* **Rotate the teacher** — every step, every teacher FPN level is multiplied along its channels by a fresh random
  orthogonal matrix Q (the same Q at every pixel). Cosines and distances between the teacher's vectors, so every
  parameter-free relation (``relations.py``), are unchanged; an imitation target ``T`` becomes ``Q·T``, a target a
  1x1 adapter cannot follow because Q changes every step. Imitation should lose its gain; a relation that carries
  knowledge should keep it.
* **Shuffle the relations** (in each relation loss) — the teacher's nodes are permuted within each image before its
  relation is computed, so the target is a real relation matrix of the right size about the wrong nodes. If a
  student gains as much from it, the term is a regulariser, not knowledge.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch


def random_orthogonal(channels: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """A C x C orthogonal matrix drawn uniformly (Haar): QR of a Gaussian matrix with the signs of R's diagonal
    moved into Q (without that correction the draw is not uniform)."""
    gaussian = torch.randn(channels, channels, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))[None, :]
    return q.to(device=device, dtype=torch.float32)


def rotate_channels(
    features: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
) -> OrderedDict[str, torch.Tensor]:
    """Each level's B x C x H x W feature rotated along C by its own fresh random orthogonal matrix."""
    rotated = OrderedDict()
    for level, feature in features.items():
        q = random_orthogonal(feature.shape[1], generator, feature.device).to(feature.dtype)
        rotated[level] = torch.einsum("dc,bchw->bdhw", q, feature)
    return rotated
