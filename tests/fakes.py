"""Small stand-in models for sampler tests (no training needed)."""
from __future__ import annotations

from types import SimpleNamespace

import torch


class ContextModel:
    """Logits that depend on the input, so that caching and padding matter.

    logits[b, l] = table[x[b, l-1]] + table[x[b, l+1]] (neighbours, ignoring padding
    positions) + position_bias[pos(l)], with positions counted from the first real
    token as the real model does.
    """

    def __init__(self, vocab_size: int, mask_id: int, seed: int = 0, time_conditioning: bool = False):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(vocab_size, vocab_size, generator=g) * 2
        self.position_bias = torch.randn(512, vocab_size, generator=g)
        self.mask_id = mask_id
        self.config = SimpleNamespace(time_conditioning=time_conditioning)
        self.calls: list[dict] = []

    def __call__(self, x, attention_mask=None, sigma=None):
        self.calls.append({"x": x.clone(), "sigma": None if sigma is None else sigma.clone()})
        if attention_mask is None:
            attention_mask = torch.ones_like(x, dtype=torch.bool)
        left = torch.roll(x, 1, dims=1)
        right = torch.roll(x, -1, dims=1)
        left_ok = torch.roll(attention_mask, 1, dims=1).clone()
        left_ok[:, 0] = False
        right_ok = torch.roll(attention_mask, -1, dims=1).clone()
        right_ok[:, -1] = False
        pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.position_bias[pos]
        out = out + self.table[left] * left_ok[..., None] + self.table[right] * right_ok[..., None]
        if sigma is not None:
            out = out + sigma[:, None, None]
        return out


class FixedModel:
    """Returns the same logits [V] at every position; records the inputs it saw."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits
        self.config = SimpleNamespace(time_conditioning=False)
        self.calls: list[torch.Tensor] = []

    def __call__(self, x, attention_mask=None, sigma=None):
        self.calls.append(x.clone())
        return self.logits.expand(x.shape[0], x.shape[1], -1).clone()


class TableModel:
    """Returns a fixed [L, V] logit table for every row; records the inputs."""

    def __init__(self, table: torch.Tensor):
        self.table = table
        self.config = SimpleNamespace(time_conditioning=False)
        self.calls: list[torch.Tensor] = []

    def __call__(self, x, attention_mask=None, sigma=None):
        self.calls.append(x.clone())
        return self.table[None].expand(x.shape[0], -1, -1).clone()
