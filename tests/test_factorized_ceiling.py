"""benchmarks.factorized_ceiling: the Rao-Blackwellised block marginals equal the
exact marginals of the AR model (enumerated on a tiny one), and blocks of one token
are the AR model's own sampler."""
from __future__ import annotations

import torch

from benchmarks import factorized_ceiling as ceiling
from sdtt_search.model.llama import CausalLM, CausalLMConfig

V, PAD, EOS = 7, 0, 2


def _model():
    torch.manual_seed(0)
    model = CausalLM(CausalLMConfig(vocab_size=V, hidden_size=32, n_layers=2, n_heads=2, intermediate_size=64))
    with torch.no_grad():
        model.lm_head.weight.mul_(60)  # far from uniform, so the marginals differ per position
    return model.eval()


def test_block_marginals_match_enumeration():
    model = _model()
    seqs = torch.tensor([[PAD, 4, 5], [3, 6, 4]])
    attention = torch.tensor([[False, True, True], [True, True, True]])
    probs, _ = ceiling.continue_rows(model, seqs, attention, 2, 4000, EOS, PAD, 1.0, torch.Generator().manual_seed(1))
    estimate = probs.view(2, 4000, 2, V).mean(1)
    with torch.no_grad():
        first = torch.softmax(model(seqs, attention_mask=attention)[:, -1].double(), -1)  # [2, V]
        exact_second = torch.zeros(2, V, dtype=torch.float64)
        for tok in range(V):
            ext = torch.cat([seqs, torch.full((2, 1), tok)], 1)
            att = torch.cat([attention, torch.ones(2, 1, dtype=torch.bool)], 1)
            after = torch.softmax(model(ext, attention_mask=att)[:, -1].double(), -1)
            if tok == EOS:  # after EOS the completion is PAD filler
                after = torch.nn.functional.one_hot(torch.full((2,), PAD), V).double()
            exact_second += first[:, tok, None] * after
    assert torch.allclose(estimate[:, 0], first, atol=1e-9)  # position 1: exact, no sampling in it
    assert torch.allclose(estimate[:, 1], exact_second, atol=0.03)
    assert (estimate[:, 1] - exact_second).abs().max() > 0  # a sampled estimate, not the enumeration itself
    assert (first - exact_second).abs().max() > 0.1  # the two positions really differ


def test_blocks_of_one_reproduce_ar_sampling_statistics():
    """One token per step draws from the model's conditionals: the first token's
    frequency matches p(x1 | prompt)."""
    model = _model()

    class Tok:
        pad_id, eos_id = PAD, EOS

        def encode(self, text):
            return [int(c) for c in text] if text[0] != "d" else [int(text[1])]

        def decode(self, ids):
            return "".join(map(str, ids))

    prompts = ["45"] * 2000
    texts, steps = ceiling.decode(model, Tok(), prompts, 3, 1, 1, 1.0, seed=3)
    with torch.no_grad():
        p = torch.softmax(model(torch.tensor([[4, 5]]))[0, -1].double(), -1)
    firsts = torch.tensor([int(t[0]) if t else EOS for t in texts])
    freq = torch.bincount(firsts, minlength=V).double() / len(texts)
    assert torch.allclose(freq[3:], p[3:], atol=0.04) and 1.0 <= steps <= 3.0
