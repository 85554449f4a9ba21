"""The sampling noise as a network input (noise-conditioned few-step students).

A sampler draws column j's token by inverse CDF at a uniform u_j (``categorical``).
A few-step student that commits several columns in one call draws them independently
from its per-column distributions, so two dependent columns (a result and its copy)
disagree whenever both are uncertain: the factorisation ceiling of per-position
students (docs/results.md). Feeding u_j to the network at column j
lets every later column of the same call know how j will be drawn: column j + 1 can
then condition on the token that column j's own distribution and u_j give, as the
teacher's ancestral sampler does, and one call can write dependent tokens
consistently (the discrete counterpart of distilling a sampler into a deterministic
noise-to-sample map, Luhman & Luhman 2021).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .invariant import InvariantLinear

#: sin/cos frequencies of the noise features (pi * 1..N): fine enough to resolve the
#: CDF thresholds of a few-way choice.
NOISE_FREQUENCIES = 8


class NoiseEmbedding(nn.Module):
    """noise [B, L] (uniforms in [0, 1), NaN = no noise at that column) -> [B, L, h].

    Features (u, sin(pi k u), cos(pi k u)) for k = 1..8, then a two-layer MLP whose
    output layer starts at zero, so a student that gains the input starts out equal to
    the model it was copied from. Columns without noise get exactly zero.
    """

    def __init__(self, hidden_size: int, frequencies: int = NOISE_FREQUENCIES):
        super().__init__()
        self.proj = nn.Sequential(InvariantLinear(2 * frequencies + 1, hidden_size), nn.SiLU(),
                                  InvariantLinear(hidden_size, hidden_size))
        nn.init.zeros_(self.proj[2].weight)
        nn.init.zeros_(self.proj[2].bias)
        self.frequencies = frequencies  # computed in forward: checkpoints are built on the meta device

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        present = ~torch.isnan(noise)
        weight = self.proj[0].weight
        u = torch.nan_to_num(noise, nan=0.0).to(torch.float32)[..., None]
        angles = u * (math.pi * torch.arange(1, self.frequencies + 1, device=u.device, dtype=torch.float32))
        features = torch.cat([u, torch.sin(angles), torch.cos(angles)], dim=-1)
        return self.proj(features.to(weight.dtype)) * present[..., None]
