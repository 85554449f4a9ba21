"""Block-wise decoding of a causal denoiser with a KV cache of the decoded prefix:
the cached span logits equal the full forward's, and the sampler returns the same
tokens with or without the cache."""
from __future__ import annotations

import pytest
import torch
from llama_fixtures import MASK, V, three_prompt_batch, tiny_llama_denoiser

from sdtt_search.diffusion import SamplerConfig
from sdtt_search.diffusion.rng import RowRNG
from sdtt_search.diffusion.samplers import confidence_sample, sample


def _model(causal: bool = True):
    return tiny_llama_denoiser(causal)


def test_span_logits_equal_the_full_forward_after_a_cached_prefix():
    model, batch = _model(), three_prompt_batch()
    x = batch.x.clone()
    x[batch.gen_mask] = torch.randint(2, V, (int(batch.gen_mask.sum()),), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(x, attention_mask=batch.attention_mask)
        cache = model.new_cache()
        for start, stop in ((0, 6), (6, 10), (10, x.shape[1])):
            span = model.forward_span(x, batch.attention_mask, start, stop, cache)
            # hidden i predicts column i + 1
            cols = slice(start + 1, min(stop + 1, x.shape[1]))
            # (a row's first real token reads itself in forward: compare columns after a real one)
            real = batch.attention_mask[:, cols] & batch.attention_mask[:, cols.start - 1:cols.stop - 1]
            width = cols.stop - cols.start
            assert torch.allclose(span[:, :width][real], full[:, cols][real], atol=1e-4), (start, stop)
            cache.extend(stop - start)


@pytest.mark.parametrize("steps,block,temperature,threshold", [
    (9, 1, 1.0, None), (5, 2, 1.0, None), (3, 3, 0.0, None), (6, 3, 0.7, None), (4, 4, 1.0, 0.5), (9, None, 1.0, None),
    (3, None, 1.0, 0.6), (9, None, 0.0, 0.9), (6, 3, 1.0, None),
])
def test_cached_sampler_returns_the_uncached_tokens(steps, block, temperature, threshold):
    model, batch = _model(), three_prompt_batch()
    outs = []
    for prefix_cache in (False, True):
        outs.append(confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK,
                                      rng=RowRNG([11, 12, 13]), steps=steps, temperature=temperature,
                                      block_length=block, threshold=threshold, prefix_cache=prefix_cache))
    plain, cached = outs
    assert torch.equal(plain.tokens, cached.tokens)
    assert torch.allclose(plain.token_logprobs, cached.token_logprobs, atol=1e-5)
    assert cached.nfe <= plain.nfe  # a lone masked column right after the cache reads the cached logits
    prompt = batch.attention_mask & ~batch.gen_mask
    assert torch.equal(cached.tokens[prompt], batch.x[prompt]) and not (cached.tokens[batch.gen_mask] == MASK).any()
    # the samples depend on the context (else equality would hold trivially for any cache)
    assert len({tuple(r) for r in cached.tokens[:, -9:].tolist()}) > 1


def test_sample_uses_the_cache_for_causal_denoisers_only(monkeypatch):
    calls = []
    causal, bidirectional, batch = _model(True), _model(False), three_prompt_batch()
    original = type(causal).forward_span

    def counting(self, *args, **kwargs):
        calls.append(args[2:4])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(causal), "forward_span", counting)
    config = SamplerConfig(method="confidence", steps=3, block_length=3, temperature=1.0)
    sample(causal, batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=MASK, seeds=[1, 2, 3])
    length = batch.x.shape[1]
    # one call per block: the prompt and the first block but its last column (hidden i
    # predicts column i + 1), then the previous block (clean now) and the next
    assert calls == [(0, length - 7), (length - 9, length - 4), (length - 6, length - 1)]
    # blocks of 1 (left to right, one token per call) run each column once: an AR model's cost
    calls.clear()
    one = SamplerConfig(method="confidence", steps=9, block_length=1, temperature=1.0)
    sample(causal, batch.x, batch.gen_mask, batch.attention_mask, one, mask_id=MASK, seeds=[1, 2, 3])
    g = length - 9
    assert calls == [(0, g)] + [(c, c + 1) for c in range(g, length - 1)]
    calls.clear()
    sample(bidirectional, batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=MASK, seeds=[1, 2, 3])
    no_cache = SamplerConfig(method="confidence", steps=3, block_length=3, temperature=1.0, cache=False)
    sample(causal, batch.x, batch.gen_mask, batch.attention_mask, no_cache, mask_id=MASK, seeds=[1, 2, 3])
    assert calls == []
    with pytest.raises(ValueError, match="causal"):
        confidence_sample(bidirectional, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK,
                          rng=RowRNG([1, 2, 3]), steps=3, block_length=3, prefix_cache=True)


def test_a_lone_masked_column_after_the_cache_reads_the_kept_logits(monkeypatch):
    """Blocks of 2 in 2 steps, the right token committed first in every row: the second
    step's only masked column is the block's first, whose logits come from the column
    before it (already cached), so no network call is made; same tokens as uncached."""
    from sdtt_search.diffusion.rng import RowRNG as RNG

    original = RNG.uniform

    def rightmost_first(self, positions, key):
        u = original(self, positions, key)
        if key[2] == 1:  # the rank draws of remasking="random": later columns rank higher
            return positions.to(u.dtype) / 1000.0
        return u

    monkeypatch.setattr(RNG, "uniform", rightmost_first)
    model, batch = _model(), three_prompt_batch(gen_length=8)
    outs = [confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG([1, 2, 3]),
                              steps=8, temperature=1.0, block_length=2, remasking="random", prefix_cache=cache)
            for cache in (False, True)]
    assert torch.equal(outs[0].tokens, outs[1].tokens)
    assert outs[0].nfe == 8 and outs[1].nfe == 4  # one call per block with the cache


@pytest.mark.parametrize("noise", [False, True])
def test_shared_prompts_run_once_and_done_rows_leave_the_cache(monkeypatch, noise):
    """Best-of-N rows: each distinct prompt runs once (its keys copied to its rows), and
    rows whose every column is committed drop out of later calls; the tokens and their
    log-probs are the ones decoded without any cache."""
    model, batch = _model(), three_prompt_batch(samples=6)
    if noise:
        model.enable_noise_input()
        with torch.no_grad():  # a noise input that matters
            for p in model.noise_embed.parameters():
                p.normal_(0, 0.5)
    rows_per_call = []
    original = type(model).forward_span

    def counting(self, input_ids, *args, **kwargs):
        rows_per_call.append((input_ids.shape[0], args[1], args[2]))
        return original(self, input_ids, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward_span", counting)
    outs = [confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK,
                              rng=RowRNG(list(range(18))), steps=5, temperature=1.0, threshold=0.3,
                              remasking="prefix", prefix_cache=cache) for cache in (False, True)]
    plain, cached = outs
    assert torch.equal(plain.tokens, cached.tokens)
    assert torch.allclose(plain.token_logprobs, cached.token_logprobs, atol=1e-5)
    g = batch.x.shape[1] - 9
    assert rows_per_call[0] == (3, 0, g)  # the prompt: once per distinct prompt
    assert rows_per_call[1][0] == 18 and rows_per_call[1][1] == g
    later = [rows for rows, _, _ in rows_per_call[2:]]
    assert later and min(later) < 18  # some rows were done and left
    assert cached.row_forwards == sum(rows for rows, _, _ in rows_per_call) < plain.row_forwards
    # the rows finish at different calls (else dropping would be trivial)
    assert len({tuple(r) for r in cached.tokens[:, -9:].tolist()}) > 3


def test_a_few_repeats_keep_one_span_over_the_whole_batch(monkeypatch):
    """Three different prompts: nothing to share, so the first call runs every row from column 0."""
    model, batch = _model(), three_prompt_batch()
    spans = []
    original = type(model).forward_span
    monkeypatch.setattr(type(model), "forward_span",
                        lambda self, ids, *a, **k: spans.append((ids.shape[0], a[1])) or original(self, ids, *a, **k))
    confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK, rng=RowRNG([1, 2, 3]),
                      steps=3, temperature=1.0, threshold=0.5, remasking="prefix", prefix_cache=True)
    assert spans[0] == (3, 0)
