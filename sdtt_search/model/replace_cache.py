"""Approximate key/value caches for bidirectional denoisers (Fast-dLLM, Wu et al. 2025, §3.2).

In a bidirectional model every column's keys and values change whenever any token
changes, so no cache is exact. Fast-dLLM observes that during the steps of one
semi-autoregressive block the keys and values outside the block barely move, and
reuses them: a full forward at the block's first step fills the cache, and each
later step of the block runs only the block's columns ("dual" cache: prefix and
suffix reused) or the block and everything after it ("prefix" cache: only the
prefix reused), attending to the cached keys and values of the other columns. The
new columns' keys and values replace theirs in the cache.

``ReplaceKVCache`` holds those keys and values; models that support it
(``supports_replace_cache``) implement ``forward_replace(input_ids, attention_mask,
start, stop, cache, keep=None)`` -> logits of columns [start, stop) (or only of the
columns ``keep`` = (lo, hi) inside them: the head, whose output is batch x columns x V,
runs on those alone), running the full sequence when the cache is empty.
"""
from __future__ import annotations

import torch


class ReplaceKVCache:
    """Per layer the rotated keys and values [B, L, H, D] of every column of a batch.

    ``put`` on an empty layer stores a full-length forward's keys and values; on a
    filled one it overwrites columns [start, start + Q) with a span's and returns the
    whole (updated) buffers. ``reset`` empties it (the next forward is a full one).
    """

    def __init__(self, n_layers: int):
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layers

    @property
    def empty(self) -> bool:
        return self.layers[0] is None

    def reset(self) -> None:
        self.layers = [None] * len(self.layers)

    def put(self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Store or overwrite keys and values k, v [B, Q, H, D] at columns [start,
        start + Q) of ``layer``; returns every column's [B, L, H, D]."""
        buffers = self.layers[layer]
        if buffers is None:
            if start != 0:
                raise ValueError(f"an empty replace cache needs a full forward from column 0, not {start}")
            self.layers[layer] = (k.clone(), v.clone())
            return k, v
        keys, values = buffers
        if keys.shape[0] != k.shape[0] or start + k.shape[1] > keys.shape[1]:
            raise ValueError(f"a span of {k.shape[1]} columns at {start} does not fit a cache of "
                             f"{keys.shape[0]} rows x {keys.shape[1]} columns; reset it for a new batch")
        keys[:, start:start + k.shape[1]] = k
        values[:, start:start + v.shape[1]] = v
        return keys, values


def kept_columns(start: int, stop: int, keep: tuple[int, int] | None) -> tuple[int, int]:
    """The columns [lo, hi) whose logits a span call [start, stop) returns (default: all)."""
    if keep is None:
        return start, stop
    lo, hi = int(keep[0]), int(keep[1])
    if not start <= lo < hi <= stop:
        raise ValueError(f"keep=({lo}, {hi}) must lie inside the span [{start}, {stop})")
    return lo, hi


def shifted_rows(positions: torch.Tensor, lo: int, hi: int, first: int) -> torch.Tensor:
    """[B, hi - lo] indices into hidden states run from column ``first``: a shifted model
    predicts column j from hidden j - 1, and a row's first real token (position 0) from itself."""
    cols = torch.arange(lo, hi, device=positions.device)
    return torch.where(positions[:, lo:hi] == 0, cols, cols - 1) - first


def span_attention_mask(key_padding_mask: torch.Tensor | None) -> torch.Tensor | None:
    """SDPA mask [B, 1, 1, L] (True = may attend) hiding padding keys from every query, or None."""
    return None if key_padding_mask is None else key_padding_mask[:, None, None, :]
