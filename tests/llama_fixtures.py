"""A tiny Llama denoiser and a left-padded batch shared by the prefix-cache and
block-causal tests."""
from __future__ import annotations

import torch

from sdtt_search.diffusion.batching import build_batch
from sdtt_search.model import ModelConfig, build_denoiser

V, MASK, PAD = 23, 1, 0


def tiny_llama_denoiser(causal: bool = True, attention_block: int = 0):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=V, hidden_size=64, n_layers=2, n_heads=2, mlp_ratio=2, backbone="llama",
                      mask_id=MASK, causal=causal, attention_block=attention_block)
    model = build_denoiser(cfg).eval()
    with torch.no_grad():  # sharper logits than the 0.02 init, so decisions depend on the context
        model.lm_head.weight.mul_(40)
    return model


def three_prompt_batch(gen_length: int = 9, samples: int = 1):
    """Three prompts of 3, 7 and 5 tokens, left-padded, each ``samples`` times in a row
    (the rows of best-of-N)."""
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(2, V, (n,), generator=g).tolist() for n in (3, 7, 5)]
    return build_batch([p for p in prompts for _ in range(samples)], gen_length, pad_id=PAD, mask_id=MASK)
