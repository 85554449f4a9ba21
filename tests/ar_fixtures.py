"""A tiny random AR twin in Hugging Face Llama format, for the AR baseline tests."""
from __future__ import annotations

import torch

from sdtt_search.ar import save_ar_pretrained
from sdtt_search.model.llama import CausalLM, CausalLMConfig
from sdtt_search.tokenizer import Tokenizer

ALPHABET = "0123456789+-*/=() ,.\n"


def tiny_ar(directory, *, task: dict | None = None, gen_length: int = 10, seed: int = 0, hidden: int = 64):
    """Save a random 2-layer CausalLM (head dim 32, as vLLM's CPU attention needs) and return (model, tokenizer)."""
    tokenizer = Tokenizer.char_level(ALPHABET)
    torch.manual_seed(seed)
    model = CausalLM(CausalLMConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, n_layers=2, n_heads=hidden // 32,
                                    intermediate_size=2 * hidden, max_length=256)).eval()
    # Sharpen the random head so greedy and sampled decodes differ visibly.
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    meta = {"task": task or {"name": "countdown", "options": {"n": 3}}, "gen_length": gen_length}
    save_ar_pretrained(directory, model, tokenizer, meta=meta)
    return model, tokenizer


@torch.no_grad()
def greedy_reference(model: CausalLM, prompt_ids: list[int], max_tokens: int, eos_id: int) -> list[int]:
    """Greedy decode by recomputing the whole prefix at every step (no KV cache)."""
    ids = list(prompt_ids)
    out: list[int] = []
    for _ in range(max_tokens):
        token = int(model(torch.tensor([ids]))[0, -1].argmax())
        out.append(token)
        ids.append(token)
        if token == eos_id:
            break
    return out
