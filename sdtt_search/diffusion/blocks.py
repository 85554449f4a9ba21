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


def denoise(model, x: torch.Tensor, *, attention_mask: torch.Tensor | None, sigma: torch.Tensor | None,
            gen_start: int) -> torch.Tensor:
    """``model``'s logits [B, L, V] on x [B, L] whose generated region starts at column
    ``gen_start`` (passed on only to block-causal models)."""
    if attention_block(model):
        return model(x, attention_mask=attention_mask, sigma=sigma, gen_start=gen_start)
    return model(x, attention_mask=attention_mask, sigma=sigma)


def first_generated_column(region: torch.Tensor) -> int:
    """The first column where any row of ``region`` [B, L] bool is True (0 if none):
    the generated region of a left-padded batch starts at the same column in every row."""
    cols = region.any(0).nonzero()
    return int(cols[0]) if cols.numel() else 0
