"""Inside the graph-reasoning unit: which pixels vote into which graph node, and how the nodes relate.

    view = graph_view(models, image, "drkd", "P2")
    node_map(view, 3)         # H x W: how strongly each pixel votes into node 3 (the projection P, upsampled)
    view.assignment           # h x w: the node each feature pixel votes into most strongly
    view.affinity             # M x M cosine similarity of the node states V (columns of V)
    view.mixing               # M x M learned node-mixing matrix A_g (the 1-D conv across nodes)
    view.residual_ratio       # ‖G(x) − x‖ / ‖x‖: below NEAR_PASS_THROUGH the unit hardly changes its input
    view.purity               # M: each node's share of its (softmax) pixel mass inside the boxes given

The projection P = W_proj * x is a plain 1x1 convolution, not a softmax: a pixel's votes can be negative, and the
node features are V = X Pᵀ (/ HW). node_map therefore keeps the sign; the arg-max assignment shows, per pixel, the
node with the largest (most positive) vote.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from drkd_viz.analysis.models import ModelSet
from drkd_viz.analysis.pixel import upsample
from drkd_viz.distill.instance_relation import level_stride
from drkd_viz.distill.relation_metrics import box_mask, node_purity
from drkd_viz.errors import UserError


@dataclass
class GraphView:
    role: str
    level: str
    projection: np.ndarray  # P: M x h x w (feature pixels, padding cropped)
    assignment: np.ndarray  # h x w int: arg-max node of each feature pixel
    affinity: np.ndarray  # M x M cosine similarity of the node states
    mixing: np.ndarray  # M x M learned node-mixing matrix A_g
    image_size: tuple[int, int]  # (H, W) of the image the maps are drawn over
    valid: tuple[float, float] | None = None  # feature (rows, columns) the image covers (the rest is padding)
    residual_ratio: float = float("nan")  # ‖G(x) − x‖ / ‖x‖ over the image
    purity: np.ndarray | None = None  # M, share of each node's pixel mass inside the boxes (None without boxes)

    @property
    def nodes(self) -> int:
        return self.projection.shape[0]

    def node_shares(self) -> np.ndarray:
        """Fraction of the feature pixels assigned (arg-max) to each node, M."""
        counts = np.bincount(self.assignment.ravel(), minlength=self.nodes)
        return counts / max(self.assignment.size, 1)


def cosine_affinity(nodes: torch.Tensor) -> np.ndarray:
    """M x M cosine similarity of the columns of ``nodes`` (S x M); a node with an all-zero state has 0 affinity."""
    unit = nodes.double() / nodes.double().norm(dim=0, keepdim=True).clamp_min(1e-12)
    return (unit.T @ unit).numpy()


NEAR_PASS_THROUGH = 0.15  # residual ratios below this: G(x) is x plus a small correction, not a relation feature


def graph_view(
    models: ModelSet, image: torch.Tensor, role: str, level: str, boxes: np.ndarray | torch.Tensor | None = None
) -> GraphView:
    """The graph projection of ``level`` for the ``role`` detector on ``image`` (one forward); with the ground-truth
    ``boxes`` (N x 4, image coordinates), each node's purity."""
    models.check_level(level, "pixel")
    if level not in models.units[role].pixel:
        raise UserError(
            f"{models.run_dirs['drkd'].name} trained no graph-reasoning units (its L_PR was off), so there is no graph "
            "projection to show; the pixel maps show the plain feature"
        )
    feats = models.features(role, image)
    with torch.no_grad():
        parts = models.units[role].pixel[level].parts(feats.features[level])
    projection_t = feats.crop(parts.projection[0], level).float()
    projection = projection_t.numpy()
    x = feats.crop(feats.features[level][0], level)
    residual_ratio = float(feats.crop(parts.residual[0], level).norm() / x.norm().clamp_min(1e-12))
    purity = None
    boxes_np = None if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if boxes_np is not None and len(boxes_np):
        # the boxes in feature pixels of this level: image -> resized input -> stride
        scale = np.array([feats.input_size[1] / feats.image_size[1], feats.input_size[0] / feats.image_size[0]] * 2)
        moved = torch.as_tensor(boxes_np * scale, dtype=torch.float32)
        inside = box_mask([moved], (1, *projection.shape[1:]), level_stride(level))
        purity = node_purity(projection_t[None], inside)[0].numpy()
    return GraphView(
        role=role,
        level=level,
        projection=projection,
        assignment=projection.argmax(0),
        affinity=cosine_affinity(parts.nodes[0]),
        mixing=parts.node_mixing.detach().float().numpy(),
        image_size=feats.image_size,
        valid=feats.valid(level),
        residual_ratio=residual_ratio,
        purity=purity,
    )


def _check_node(view: GraphView, node: int) -> None:
    if not 0 <= node < view.nodes:
        raise UserError(f"node {node} does not exist: {view.level} has {view.nodes} graph nodes (0…{view.nodes - 1})")


def node_map(view: GraphView, node: int) -> np.ndarray:
    """H x W map of how strongly each pixel votes into ``node``: the projection P[node], signed, bilinearly
    upsampled onto the image."""
    _check_node(view, node)
    return upsample(torch.from_numpy(view.projection[node]), view.image_size, view.valid).numpy()


def assignment_map(view: GraphView) -> np.ndarray:
    """H x W arg-max node of every image pixel (nearest feature pixel: nodes are labels, not to be blended)."""
    h, w = view.assignment.shape
    vh, vw = view.valid or (h, w)
    rows = np.minimum(((np.arange(view.image_size[0]) + 0.5) * vh / view.image_size[0]).astype(int), h - 1)
    cols = np.minimum(((np.arange(view.image_size[1]) + 0.5) * vw / view.image_size[1]).astype(int), w - 1)
    return view.assignment[rows[:, None], cols[None, :]]
