"""``SamplerConfig.window``: a prefix-remasking threshold step of a causal denoiser runs
only the columns a row can still commit (``window`` at a time) and returns the tokens
the whole tail gives, from fewer columns run."""
from __future__ import annotations

import pytest
import torch
from llama_fixtures import MASK, three_prompt_batch, tiny_llama_denoiser

from sdtt_search.diffusion import SamplerConfig
from sdtt_search.diffusion.rng import RowRNG
from sdtt_search.diffusion.samplers import confidence_sample, sample


def _noisy():
    model = tiny_llama_denoiser(True).enable_noise_input()
    torch.manual_seed(1)
    with torch.no_grad():
        model.noise_embed.proj[2].weight.normal_(0, 1.0)
    return model.eval()


def _decode(model, batch, window, *, steps, threshold, temperature=1.0, head=0):
    columns = []
    original = type(model).forward_span

    def counting(self, x, attention_mask, start, stop, cache, **kwargs):
        if start >= int(batch.gen_mask.any(0).nonzero()[0]) - 1:  # not the prompt's prefill
            columns.append(x.shape[0] * (stop - start))
        return original(self, x, attention_mask, start, stop, cache, **kwargs)

    type(model).forward_span = counting
    try:
        out = confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK,
                                rng=RowRNG(list(range(batch.x.shape[0]))), steps=steps, temperature=temperature,
                                threshold=threshold, remasking="prefix", prefix_cache=True, window=window,
                                head_tokens=head, head_temperature=1.5 if head else None)
    finally:
        type(model).forward_span = original
    return out, sum(columns)


@pytest.mark.parametrize("noise", [False, True])
@pytest.mark.parametrize("steps,threshold,temperature", [(3, 0.2, 1.0), (5, 0.4, 1.0), (9, 0.6, 0.7), (4, 0.3, 0.0)])
def test_a_window_returns_the_whole_tails_tokens_from_fewer_columns(noise, steps, threshold, temperature):
    model = _noisy() if noise else tiny_llama_denoiser(True)
    batch = three_prompt_batch(gen_length=9, samples=4)  # shared prompts, rows done at different steps
    full, full_columns = _decode(model, batch, None, steps=steps, threshold=threshold, temperature=temperature)
    assert not (full.tokens == MASK).any()
    extra_calls = 0
    for window in (1, 2, 3, 5):
        out, columns = _decode(model, batch, window, steps=steps, threshold=threshold, temperature=temperature)
        assert torch.equal(out.tokens, full.tokens), window
        assert torch.allclose(out.token_logprobs, full.token_logprobs, atol=1e-5)
        assert columns <= full_columns
        if window == 1:  # every extension is one more call: runs longer than one column happened
            extra_calls = out.nfe - full.nfe
    assert extra_calls > 0
    # the samples depend on the context (greedy: on the prompt only)
    assert len({tuple(r) for r in full.tokens[:, -9:].tolist()}) > (3 if temperature else 2)


def test_a_window_saves_most_columns_when_runs_break_early():
    model, batch = tiny_llama_denoiser(True), three_prompt_batch(gen_length=9, samples=4)
    full, full_columns = _decode(model, batch, None, steps=6, threshold=0.9)
    out, columns = _decode(model, batch, 2, steps=6, threshold=0.9)
    assert torch.equal(out.tokens, full.tokens)
    assert columns < 0.75 * full_columns and out.nfe > full.nfe


def test_a_hot_head_draws_the_same_tokens_with_a_window():
    model, batch = _noisy(), three_prompt_batch(gen_length=9, samples=4)
    full, _ = _decode(model, batch, None, steps=4, threshold=0.3, head=3)
    out, _ = _decode(model, batch, 2, steps=4, threshold=0.3, head=3)
    assert torch.equal(out.tokens, full.tokens)


def test_sample_passes_the_window_through():
    model, batch = tiny_llama_denoiser(True), three_prompt_batch(gen_length=9, samples=2)
    base = dict(method="confidence", steps=4, threshold=0.3, remasking="prefix", temperature=1.0)
    outs = [sample(model, batch.x, batch.gen_mask, batch.attention_mask, SamplerConfig(**base, window=w), mask_id=MASK,
                   seeds=list(range(6))) for w in (None, 1)]
    assert torch.equal(outs[0].tokens, outs[1].tokens) and outs[1].nfe > outs[0].nfe


@pytest.mark.parametrize("values,match", [
    (dict(window=0), "positive integer"),
    (dict(window=True), "positive integer"),
    (dict(window=2, remasking="low_confidence"), "remasking=prefix"),
    (dict(window=2, threshold=None), "threshold"),
    (dict(window=2, method="ancestral"), "method=confidence"),
])
def test_bad_windows_are_one_line_errors(values, match):
    base = dict(method="confidence", steps=4, threshold=0.5, remasking="prefix")
    with pytest.raises(ValueError, match=match) as err:
        SamplerConfig(**{**base, **values})
    assert "\n" not in str(err.value) and "sampler.window" in str(err.value)


def test_a_window_needs_the_prefix_cache_of_a_causal_model():
    batch = three_prompt_batch(gen_length=6)
    kwargs = dict(mask_id=MASK, rng=RowRNG([1, 2, 3]), steps=3, threshold=0.5, remasking="prefix", window=2)
    with pytest.raises(ValueError, match="prefix cache"):
        confidence_sample(tiny_llama_denoiser(True), batch.x, batch.gen_mask, batch.attention_mask,
                          prefix_cache=False, **kwargs)
    with pytest.raises(ValueError, match="without attention blocks"):
        confidence_sample(tiny_llama_denoiser(True, attention_block=2), batch.x, batch.gen_mask,
                          batch.attention_mask, prefix_cache=True, **kwargs)


def test_sampler_speed_times_the_zoo_student_with_and_without_a_window():
    from benchmarks import sampler_speed as speed

    rows = [speed.measure("countdown-cd3-num-sdtt-4", 8, 1, window=w)[0] for w in (None, 2)]
    assert rows[0]["window"] is None and rows[1]["window"] == 2
    assert rows[1]["nfe"] > rows[0]["nfe"]  # the window's extensions are calls too
    assert "| countdown-cd3-num-sdtt-4 | 4 | on | 2 | on | 8 | 1 |" in speed.table(rows)
    both = speed.measure("countdown-cd3-num-sdtt-4", 8, 1, invariants=(False, True), samples=4)
    assert [r["invariant"] for r in both] == [False, True] and both[0]["nfe"] == both[1]["nfe"]
    with pytest.raises(ValueError, match="sampler.window"):
        speed.measure("countdown-cd3-num-teacher", 2, 1, window=2)  # low-confidence remasking, no threshold
