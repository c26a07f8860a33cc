"""The graph-reasoning unit G (GloRe, Chen et al., CVPR 2019) as DRKD uses it (spec §2).

X = W_state * x            B x S x HW      state features            (1x1 conv, S = 2M by default)
P = W_proj  * x            B x M x HW      projection: pixels vote into M graph nodes
V = X Pᵀ (/ HW)            B x S x M       node features
Z = W_g relu(V + A_g V)    B x S x M       graph convolution: across nodes (A_g, with bias), then states (W_g)
Y = Z P                    B x S x HW      back to pixels
G(x) = x + BN(W_ext * Y)   B x C x H x W   relation feature (residual)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class GraphReasoningParts:
    """Everything the unit computes on the way, for inspection and figures."""

    relation: torch.Tensor  # G(x): B x C x H x W
    projection: torch.Tensor  # P: B x M x H x W (how strongly each pixel votes into each node)
    nodes: torch.Tensor  # V: B x S x M
    node_mixing: torch.Tensor  # A_g: M x M (the learned node-mixing matrix)
    residual: torch.Tensor  # BN(W_ext·Y): B x C x H x W, what the unit adds to x


class GraphReasoningUnit(nn.Module):
    def __init__(
        self, channels: int, nodes: int, states: int | None = None, normalize: bool = True, zero_init: bool = False
    ):
        super().__init__()
        self.nodes, self.states = nodes, states or 2 * nodes
        self.normalize = normalize  # divide V by HW: the scale no longer depends on the image size
        self.state = nn.Conv2d(channels, self.states, 1)
        self.proj = nn.Conv2d(channels, nodes, 1)
        self.node_mix = nn.Conv1d(nodes, nodes, 1)  # mixes the node axis (A_g), with bias
        self.state_mix = nn.Conv1d(self.states, self.states, 1, bias=False)  # mixes the state axis (W_g)
        self.extend = nn.Conv2d(self.states, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        if zero_init:  # G(x) = x at the start; the residual grows only as far as training asks (GloRe's init)
            nn.init.zeros_(self.bn.weight)

    def parts(self, x: torch.Tensor) -> GraphReasoningParts:
        b, _, h, w = x.shape
        states = self.state(x).flatten(2)  # B x S x HW
        projection = self.proj(x).flatten(2)  # B x M x HW
        nodes = states @ projection.transpose(1, 2)  # B x S x M
        if self.normalize:
            nodes = nodes / (h * w)
        mixed = self.node_mix(nodes.transpose(1, 2)).transpose(1, 2)  # across nodes
        graph = self.state_mix(torch.relu(nodes + mixed))  # B x S x M
        back = (graph @ projection).view(b, self.states, h, w)
        residual = self.bn(self.extend(back))
        return GraphReasoningParts(
            x + residual, projection.view(b, self.nodes, h, w), nodes, self.node_mix.weight.squeeze(-1), residual
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts(x).relation
