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


def first_generated_column(region: torch.Tensor) -> int:
    """The first column where any row of ``region`` [B, L] bool is True (0 if none):
    the generated region of a left-padded batch starts at the same column in every row."""
    cols = region.any(0).nonzero()
    return int(cols[0]) if cols.numel() else 0
