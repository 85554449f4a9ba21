"""Calling a denoiser that may be block-causal (``model.attention_block`` > 0).

Block-causal denoisers need the first generated column (``gen_start``) to lay out
their attention blocks; every other denoiser (our DiT, bidirectional or causal Llama
denoisers, adapters of foreign models) keeps the plain
``model(x, attention_mask=..., sigma=...)`` signature.
"""
from __future__ import annotations

import torch


def attention_block(model) -> int:
    """The block of a block-causal denoiser, 0 for any other model (a DDP wrapper is
    looked through)."""
    inner = getattr(model, "module", model)
    return int(getattr(getattr(inner, "config", None), "attention_block", 0) or 0)


def is_time_conditioned(model) -> bool:
    """Whether ``model`` wants sigma(t) (a ``config.time_conditioning`` flag; False if absent)."""
    return bool(getattr(getattr(model, "config", None), "time_conditioning", False))


def takes_noise(model) -> bool:
    """Whether ``model`` reads the sampler's per-column noise (``model.noise_input``)."""
    inner = getattr(model, "module", model)
    return bool(getattr(getattr(inner, "config", None), "noise_input", False))


def denoise(model, x: torch.Tensor, *, attention_mask: torch.Tensor | None, sigma: torch.Tensor | None,
            gen_start: int, noise: torch.Tensor | None = None) -> torch.Tensor:
    """``model``'s logits [B, L, V] on x [B, L] whose generated region starts at column
    ``gen_start`` (passed on only to block-causal models). ``noise`` [B, L]: each
    generated column's sampling uniform (NaN elsewhere), passed on only to models that
    read it (``takes_noise``)."""
    kwargs = {}
    if attention_block(model):
        kwargs["gen_start"] = gen_start
    if noise is not None and takes_noise(model):
        kwargs["noise"] = noise
    return model(x, attention_mask=attention_mask, sigma=sigma, **kwargs)


def distinct_rows(x: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The rows of ``x`` [B, L] that a network call must run when identical rows (same
    tokens, same attention mask) give identical logits: ``(first, inverse)`` with
    ``first`` [U] the index of each distinct row's first occurrence, in batch order, and
    ``inverse`` [B] the distinct row each row repeats; None when every row is distinct.
    A problem's candidates all start from its prompt and a fully masked completion, so
    the first call of a best-of-N batch or a particle group runs each problem once, and a
    resampled particle shares its parent's next call."""
    if x.shape[0] < 2:
        return None
    key = x if attention_mask is None else torch.cat([x, attention_mask.to(x.dtype)], dim=1)
    _, inverse = torch.unique(key, dim=0, return_inverse=True)
    count = int(inverse.max()) + 1
    if count == x.shape[0]:
        return None
    order = torch.arange(x.shape[0], device=x.device)
    first = torch.full((count,), x.shape[0], dtype=torch.long, device=x.device).scatter_reduce(
        0, inverse, order, reduce="amin")
    rank = torch.empty_like(first)
    sorted_first, perm = first.sort()
    rank[perm] = torch.arange(count, device=x.device)  # distinct rows numbered in batch order
    return sorted_first, rank[inverse]


def denoise_distinct(model, x: torch.Tensor, *, attention_mask: torch.Tensor | None, sigma: torch.Tensor | None,
                     gen_start: int, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """``denoise`` run once per distinct row (``distinct_rows``): (logits [B, L, V], rows
    run). Identical to ``denoise`` under batch-invariant kernels
    (``sdtt_search.model.invariant.sampling``): a row's logits do not depend on its
    batch. A row's ``sigma`` is a function of its tokens; rows with ``noise`` for a model
    that reads it are never merged."""
    shared = None if (noise is not None and takes_noise(model)) else distinct_rows(x, attention_mask)
    if shared is None:
        return denoise(model, x, attention_mask=attention_mask, sigma=sigma, gen_start=gen_start, noise=noise), \
            x.shape[0]
    first, inverse = shared
    out = denoise(model, x[first], attention_mask=None if attention_mask is None else attention_mask[first],
                  sigma=None if sigma is None else sigma[first], gen_start=gen_start,
                  noise=None if noise is None else noise[first])
    return out[inverse], int(first.numel())


def first_generated_column(region: torch.Tensor) -> int:
    """The first column where any row of ``region`` [B, L] bool is True (0 if none):
    the generated region of a left-padded batch starts at the same column in every row."""
    cols = region.any(0).nonzero()
    return int(cols[0]) if cols.numel() else 0
