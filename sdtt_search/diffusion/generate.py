"""Text in, text out: tokenise prompts, sample completions, decode."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .batching import build_batch
from ..sampling_config import SamplerConfig
from .samplers import sample


@dataclass
class Generation:
    """Completions of one ``generate`` call.

    Attributes:
        texts: decoded completions (cut at the first EOS), one per prompt.
        tokens: [B, gen_length] generated token ids.
        token_logprobs: [B, gen_length] model log-prob of each generated token.
        nfe: network calls made; row_forwards: rows processed over all calls.
        trails: with ``trace=True``, per row the decoded text of each step's prediction
            of the clean completion, in step order (temporal voting); else None.
    """

    texts: list[str]
    tokens: torch.Tensor
    token_logprobs: torch.Tensor
    nfe: int
    row_forwards: int
    trails: list[list[str]] | None = None


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    config: SamplerConfig,
    *,
    seeds: Sequence[int] | None = None,
    gen_length: int | None = None,
    heads: torch.Tensor | None = None,
    trace: bool = False,
) -> Generation:
    """Sample one completion per prompt with a masked diffusion model.

    Args:
        model: callable ``(x, attention_mask=, sigma=) -> logits`` (e.g. ``Denoiser``).
        tokenizer: ``sdtt_search.tokenizer.Tokenizer`` (needs pad_id / mask_id / eos).
        prompts: prompt texts; repeat a prompt to draw several samples of it.
        seeds: one per prompt (default 0..B-1); a row's result depends only on its seed.
        gen_length: completion length (default ``config.gen_length``).
        heads: [B, config.stratify] float64 stratified uniforms of the first generated
            tokens (``SamplerConfig.stratify``; ``Search`` makes them), or None.
        trace: also decode each step's prediction of the clean completion (``trails``).
    """
    length = gen_length or config.gen_length
    if length is None:
        raise ValueError("set gen_length (argument or sampler.gen_length): how many tokens to generate")
    seeds = list(range(len(prompts))) if seeds is None else list(seeds)
    device = next(model.parameters()).device if hasattr(model, "parameters") else torch.device("cpu")
    batch = build_batch(
        [tokenizer.encode(p) for p in prompts], length,
        pad_id=tokenizer.pad_id, mask_id=tokenizer.mask_id, device=device,
    )
    steps: list[torch.Tensor] | None = [] if trace else None
    out = sample(model, batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=tokenizer.mask_id, seeds=seeds,
                 heads=heads, trace=steps)
    tokens = batch.completions(out.tokens).cpu()
    texts = [tokenizer.decode(row.tolist()) for row in tokens]
    logprobs = batch.completions(out.token_logprobs).cpu()
    trails = None
    if steps is not None:
        trails = [[tokenizer.decode(row.tolist()) for row in batch.completions(step.to(batch.x.device)).cpu()]
                  for step in steps]
        trails = [list(row) for row in zip(*trails)] if trails else [[] for _ in prompts]
    return Generation(texts=texts, tokens=tokens, token_logprobs=logprobs, nfe=out.nfe, row_forwards=out.row_forwards,
                      trails=trails)
