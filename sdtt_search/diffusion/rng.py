"""Counter-based per-row random numbers: a draw is a pure function of
(row seed, step key, position).

Seeding each row (e.g. by problem and sample index) makes a row's sample identical
whatever the batch it is in, the executor or the number of workers, and whatever
the other rows do (one row may finish early, blocks may take different numbers
of steps). The mixer is SplitMix64 (Steele et al., 2014), vectorised in int64;
uniforms carry 53 random bits (float64: low-precision categorical
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


_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
_SHIFT_KEY = 0x5715


def radical_inverse(index: torch.Tensor, base: int) -> torch.Tensor:
    """Van der Corput radical inverse: the base-``base`` digits of ``index`` [N] (int,
    >= 0) mirrored after the point, as float64 in [0, 1). Indices 0..b^m - 1 put one
    point in each of the b^m equal cells of [0, 1), and so does any run of b^m
    consecutive indices starting at a multiple of b^m."""
    index = index.to(torch.int64).clone()
    out = torch.zeros(index.shape, dtype=torch.float64, device=index.device)
    scale = 1.0 / base
    while bool((index > 0).any()):
        out += (index % base).to(torch.float64) * scale
        index //= base
        scale /= base
    return out


def stratified_uniforms(group_seeds: Sequence[int], indices: Sequence[int], dims: int,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """Randomised Halton points: [B, dims] float64 uniforms, row r the point
    ``indices[r]`` of its group's sequence (Owen, "Monte Carlo theory, methods and
    examples", ch. 15-17: Halton points in bases 2, 3, 5, ..., each coordinate shifted
    mod 1 by a uniform drawn from the group's seed, a Cranley-Patterson rotation).

    Each row alone is an exact U(0, 1)^dims draw (the shift is uniform), so a sample
    drawn from it by inverse CDF has the model's distribution; the rows of one group
    together cover [0, 1)^dims evenly (the first 2^m points put one point in each
    2^-m-wide cell of the first coordinate), so the candidates of one problem spread
    over the model's first choices in proportion to their probability, with fewer
    repeats than independent draws give.
    """
    if not 1 <= dims <= len(_PRIMES):
        raise ValueError(f"stratified uniforms support 1 to {len(_PRIMES)} dimensions, got {dims}")
    index = torch.as_tensor(list(indices), dtype=torch.int64, device=device)
    if index.numel() and int(index.min()) < 0:
        raise ValueError("stratified uniforms need candidate indices >= 0")
    shift = RowRNG(group_seeds, device=device).uniform(
        torch.arange(dims, device=device).expand(index.numel(), -1), key=(_SHIFT_KEY,))
    points = torch.stack([radical_inverse(index, b) for b in _PRIMES[:dims]], dim=-1)
    return torch.remainder(points + shift, 1.0)
