"""Counter-based per-row random numbers: a draw is a pure function of
(row seed, step key, position).

Seeding each row (e.g. by problem and sample index) makes a row's sample identical
whatever the batch it is in, the executor or the number of workers, and whatever
the other rows do (one row may finish early, blocks may take different numbers
of steps). The mixer is SplitMix64 (Steele et al., 2014), vectorised in int64;
uniforms carry 53 random bits (float64, spec §E1: low-precision categorical
sampling biases the samples).
"""
from __future__ import annotations

from typing import Sequence

import torch

_MASK64 = (1 << 64) - 1


def _signed(c: int) -> int:
    """A uint64 constant as the int64 with the same bits."""
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_M1 = _signed(0xBF58476D1CE4E5B9)
_M2 = _signed(0x94D049BB133111EB)


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bits."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def splitmix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on int64 tensors (wrapping arithmetic)."""
    z = z + _GOLDEN
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


class RowRNG:
    """Random streams for the rows of a batch, one seed per row."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seeds = torch.tensor([_signed(int(s) & _MASK64) for s in seeds], dtype=torch.int64, device=self.device)

    def __len__(self) -> int:
        return self.seeds.numel()

    def uniform(self, positions: torch.Tensor, key: Sequence[int]) -> torch.Tensor:
        """Float64 uniforms in [0, 1), one per entry of ``positions``.

        Args:
            positions: [B, L] int positions of each row's tokens, counted from the
                row's first real token (so left padding does not shift the draws).
            key: integers naming the draw (e.g. (step, stream)); different keys give
                independent numbers, the same key the same numbers.
        Returns:
            [B, L] float64.
        """
        z = splitmix64(self.seeds)
        for k in key:
            z = splitmix64(z ^ int(k))
        z = splitmix64(z[:, None] ^ splitmix64(positions.to(torch.int64)))
        return _shr(z, 11).to(torch.float64) * (1.0 / (1 << 53))


def row_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, L] position of each token counted from the row's first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def categorical(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF categorical sampling in float64.

    Args:
        probs: [..., V] probabilities (any float dtype; normalised here in float64).
        u: [...] float64 uniforms in [0, 1).
    Returns:
        [...] sampled indices (long). Zero-probability entries are never chosen.
    """
    p = probs.to(torch.float64)
    cdf = p.cumsum(-1)
    cdf = cdf / cdf[..., -1:]
    idx = torch.searchsorted(cdf, u.unsqueeze(-1), right=True).squeeze(-1)
    # idx is the first entry whose CDF exceeds u, so p[idx] > 0: entries without
    # mass are never chosen. The clamp only guards against u rounding to 1.
    return idx.clamp_(max=p.shape[-1] - 1)
