"""Lay out prompts for batched, prompt-conditioned generation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class GenerationBatch:
    """``[left padding | prompt | MASK * gen_length]`` rows.

    Attributes:
        x: [B, L] long tokens; L = longest prompt + gen_length.
        gen_mask: [B, L] bool, True on the last gen_length columns.
        attention_mask: [B, L] bool, False on left padding.
    """

    x: torch.Tensor
    gen_mask: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def gen_length(self) -> int:
        return int(self.gen_mask[0].sum())

    def completions(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, gen_length] generated part of sampler output ``tokens`` [B, L]."""
        return tokens[:, -self.gen_length :]


def build_batch(
    prompts: Sequence[Sequence[int]],
    gen_length: int,
    *,
    pad_id: int,
    mask_id: int,
    device: torch.device | str = "cpu",
) -> GenerationBatch:
    """Left-pad token-id prompts and append ``gen_length`` masks to each.

    Left padding puts the generated region in the same columns of every row (what
    semi-autoregressive blocks need); the model sees positions counted from the
    first real token, so padding does not change a row's result.
    """
    if gen_length < 1:
        raise ValueError(f"gen_length={gen_length} must be a positive integer")
    if not prompts:
        raise ValueError("no prompts given")
    width = max(len(p) for p in prompts) + gen_length
    x = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        start = width - gen_length - len(prompt)
        x[row, start : width - gen_length] = torch.tensor(list(prompt), dtype=torch.long)
        attention[row, start:] = True
    x[:, width - gen_length :] = mask_id
    gen_mask = torch.zeros_like(attention)
    gen_mask[:, width - gen_length :] = True
    return GenerationBatch(x=x.to(device), gen_mask=gen_mask.to(device), attention_mask=attention.to(device))
