"""Block-causal denoisers (block diffusion attention): a generated column sees its
whole block and everything before it, nothing after; the cached block-wise sampler
returns the uncached tokens; block-causal SDTT gives each round's student its
decoding block."""
from __future__ import annotations

import math

import pytest
import torch
from distill_fixtures import pretrain_config, sdtt_config
from llama_fixtures import MASK, V, three_prompt_batch, tiny_llama_denoiser

from distill import pretrain, sdtt
from sdtt_search.checkpoint import load_pretrained
from sdtt_search.diffusion import LogLinearSchedule, SamplerConfig, mdlm_loss
from sdtt_search.diffusion.rng import RowRNG
from sdtt_search.diffusion.samplers import confidence_sample, sample
from sdtt_search.loading import load_model
from sdtt_search.model import ModelConfig
from sdtt_search.model.attention import block_causal_mask


def _model(block: int = 3):
    return tiny_llama_denoiser(True, block)


def test_block_causal_mask_pattern():
    # 3 prompt columns (causal), then blocks of 2 from column 3: {3, 4}, {5, 6}, {7}
    allowed = block_causal_mask(8, 3, 2).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1, 1, 1],
    ]
    assert torch.equal(block_causal_mask(6, 2, 1), torch.ones(6, 6, dtype=torch.bool).tril())


def test_a_block_sees_itself_and_the_past_only():
    model, batch = _model(3), three_prompt_batch()
    x = batch.x.clone()
    x[batch.gen_mask] = torch.randint(2, V, (int(batch.gen_mask.sum()),), generator=torch.Generator().manual_seed(4))
    start = int(batch.gen_mask.any(0).nonzero()[0])  # blocks [start, start+3), [start+3, start+6), ...
    with torch.no_grad():
        base = model(x, attention_mask=batch.attention_mask, gen_start=start)
        later = x.clone()
        later[:, start + 4] = (later[:, start + 4] + 1) % V  # a token of the second block
        out = model(later, attention_mask=batch.attention_mask, gen_start=start)
    # logits at column c come from hidden c - 1: columns <= start + 3 read hidden states of
    # the prompt and the first block, which cannot see the second block
    assert torch.allclose(out[:, :start + 4], base[:, :start + 4], atol=1e-5)
    # within its block, hidden start + 3 (predicting start + 4) sees column start + 4 ...
    assert not torch.allclose(out[:, start + 4], base[:, start + 4], atol=1e-3)
    # ... which a causal model could not: there it only moves columns after it
    causal = _model(0)
    with torch.no_grad():
        a, b = causal(x, attention_mask=batch.attention_mask), causal(later, attention_mask=batch.attention_mask)
    assert torch.allclose(a[:, :start + 5], b[:, :start + 5], atol=1e-5)
    # blocks of one token are the causal model
    one = _model(1)
    with torch.no_grad():
        assert torch.allclose(one(x, attention_mask=batch.attention_mask, gen_start=start),
                              causal(x, attention_mask=batch.attention_mask), atol=1e-5)


def test_block_causal_needs_gen_start_and_a_causal_llama():
    model, batch = _model(3), three_prompt_batch()
    with pytest.raises(ValueError, match="gen_start"):
        model(batch.x, attention_mask=batch.attention_mask)
    for bad in (dict(causal=False, backbone="llama"), dict(causal=True, backbone="dit"), dict(causal=False)):
        with pytest.raises(ValueError, match="attention_block"):
            ModelConfig(vocab_size=V, mask_id=MASK, attention_block=2, **bad)
    with pytest.raises(ValueError, match="attention_block"):
        ModelConfig(vocab_size=V, backbone="llama", causal=True, attention_block=-1)


def test_span_logits_equal_the_full_forward_block_by_block():
    model, batch = _model(3), three_prompt_batch()
    x = batch.x.clone()
    x[batch.gen_mask] = torch.randint(2, V, (int(batch.gen_mask.sum()),), generator=torch.Generator().manual_seed(5))
    start = int(batch.gen_mask.any(0).nonzero()[0])
    with torch.no_grad():
        full = model(x, attention_mask=batch.attention_mask, gen_start=start)
        cache = model.new_cache()
        for lo, hi in ((0, start + 3), (start + 3, start + 6), (start + 6, x.shape[1])):
            span = model.forward_span(x, batch.attention_mask, lo, hi, cache, gen_start=start)
            cols = slice(lo + 1, min(hi + 1, x.shape[1]))
            width = cols.stop - cols.start
            real = batch.attention_mask[:, cols] & batch.attention_mask[:, cols.start - 1:cols.stop - 1]
            assert torch.allclose(span[:, :width][real], full[:, cols][real], atol=1e-4), (lo, hi)
            cache.extend(hi - lo)


@pytest.mark.parametrize("steps,block,temperature,threshold", [
    (9, 3, 1.0, None), (3, 3, 0.0, None), (6, 6, 1.0, None), (4, 3, 1.0, 0.5), (9, None, 1.0, None),
    (5, 2, 1.0, None), (9, 4, 1.0, 0.5), (3, None, 1.0, 0.6), (9, 1, 1.0, None),  # blocks that cut the model's
])
def test_cached_sampler_returns_the_uncached_tokens(steps, block, temperature, threshold):
    model, batch = _model(3), three_prompt_batch()
    outs = []
    for prefix_cache in (False, True):
        outs.append(confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK,
                                      rng=RowRNG([11, 12, 13]), steps=steps, temperature=temperature,
                                      block_length=block, threshold=threshold, prefix_cache=prefix_cache))
    plain, cached = outs
    assert torch.equal(plain.tokens, cached.tokens)
    assert torch.allclose(plain.token_logprobs, cached.token_logprobs, atol=1e-5)
    prompt = batch.attention_mask & ~batch.gen_mask
    assert torch.equal(cached.tokens[prompt], batch.x[prompt]) and not (cached.tokens[batch.gen_mask] == MASK).any()
    assert len({tuple(r) for r in cached.tokens[:, -9:].tolist()}) > 1


def test_cached_calls_run_whole_attention_blocks_and_each_clean_column_once(monkeypatch):
    calls = []
    model, batch = _model(3), three_prompt_batch()
    original = type(model).forward_span

    def counting(self, *args, **kwargs):
        calls.append(args[2:4])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward_span", counting)
    length = batch.x.shape[1]
    sample(model, batch.x, batch.gen_mask, batch.attention_mask,
           SamplerConfig(method="confidence", steps=3, block_length=3, temperature=1.0), mask_id=MASK, seeds=[1, 2, 3])
    # each call runs whole attention blocks: the prompt and block 1, then block 1 again
    # (clean now, for its cache entries) and block 2, then block 2 and block 3
    assert calls == [(0, length - 6), (length - 9, length - 3), (length - 6, length)]
    # decoding blocks of 2 cut the model's blocks of 3: the cache stays on (and exact,
    # see test_cached_sampler_returns_the_uncached_tokens), running the attention block
    # that holds the last column predicting a masked one
    calls.clear()
    sample(model, batch.x, batch.gen_mask, batch.attention_mask,
           SamplerConfig(method="confidence", steps=5, block_length=2, temperature=1.0), mask_id=MASK, seeds=[1, 2, 3])
    g = length - 9
    assert calls == [(0, g + 3), (g, g + 3), (g, g + 6), (g + 3, g + 9), (g + 6, g + 9)]


def test_mdlm_loss_passes_the_generated_columns_to_a_block_causal_model():
    """The NELBO of a block-causal denoiser (MDLM eq. 10 with block diffusion's attention,
    Arriola et al. 2025) recomputed row by row: blocks counted from the first generated
    column, w(t) = 1/t on each masked completion token, summed over the batch and divided
    by the number of completion tokens. A layout one column off scores differently, so
    the loss must hand the model the right start."""
    model, batch = _model(3), three_prompt_batch()
    x = batch.x.clone()
    x[batch.gen_mask] = torch.randint(2, V, (int(batch.gen_mask.sum()),), generator=torch.Generator().manual_seed(6))
    gen_start = x.shape[1] - 9  # build_batch appends the 9 generated columns on the right of every row
    seen = []

    class Recording(torch.nn.Module):  # the same model, keeping the noised input it was shown
        def __init__(self):
            super().__init__()
            self.inner, self.config = model, model.config

        def forward(self, z, **kwargs):
            seen.append(z.clone())
            return self.inner(z, **kwargs)

    schedule, t = LogLinearSchedule(), torch.tensor([0.3, 0.6, 0.9])
    with torch.no_grad():
        out = mdlm_loss(Recording(), x, batch.gen_mask, mask_id=MASK, attention_mask=batch.attention_mask,
                        schedule=schedule, t=t, generator=torch.Generator().manual_seed(0))
    (z,) = seen
    masked = z == MASK
    assert torch.equal(z[~masked], x[~masked]) and bool((masked <= batch.gen_mask).all())
    assert 0 < int(masked.sum()) < int(batch.gen_mask.sum())  # some of the completion clean, some masked

    def reference(start: int) -> float:
        total = 0.0
        for b in range(x.shape[0]):
            with torch.no_grad():
                logits = model(z[b:b + 1], attention_mask=batch.attention_mask[b:b + 1],
                               sigma=schedule.sigma(t[b:b + 1]), gen_start=start)[0].double()
            logits[:, MASK] = float("-inf")  # SUBS: zero masking probability
            logp = torch.log_softmax(logits, -1)
            for col in masked[b].nonzero().flatten().tolist():
                total -= float(logp[col, x[b, col]]) / float(t[b])
        return total / int(batch.gen_mask.sum())

    expected = reference(gen_start)
    assert out.num_tokens == int(batch.gen_mask.sum()) and out.num_masked == int(masked.sum())
    assert math.isclose(float(out.loss), expected, rel_tol=1e-4), (float(out.loss), expected)
    for wrong in (0, gen_start - 1, gen_start + 1):  # the reference tells these layouts apart
        assert not math.isclose(reference(wrong), expected, rel_tol=1e-3), wrong


def test_block_causal_sdtt_gives_each_round_its_decoding_block(tmp_path):
    """Teacher: a causal denoiser decoding blocks of 1; block-causal students of 16 and
    8 steps attend within blocks of 2 and 4 (their decoding blocks) and load with the
    prefix cache on."""
    ar_dir = pretrain.run(pretrain_config(tmp_path / "ar", "objective=ar", "model.n_heads=1"))
    causal = pretrain.run(pretrain_config(tmp_path / "causal", "model.backbone=llama", "model.causal=true",
                                          "model.n_heads=1", f"init_from={ar_dir}", "semi_ar=1.0", "train.steps=2",
                                          "eval.sampler.method=confidence", "+eval.sampler.block_length=1"))
    gen = load_pretrained(causal).meta["gen_length"]
    rows = sdtt.run(sdtt_config(tmp_path / "sdtt", causal, "semi_ar=1.0", "eval.block_length=1", "teacher_steps=32",
                                "min_steps=8", "eval.method=confidence", "block_causal=true"))
    assert [r["student_steps"] for r in rows] == [16, 8]
    for steps in (16, 8):
        student = load_model(str(tmp_path / "sdtt" / f"round-{32 // steps // 2}-steps-{steps}"))
        block = -(-gen // steps)
        assert student.model.config.attention_block == block and student.meta["sdtt"]["block_causal"]
        sampler = student.default_sampler()
        assert sampler.block_length == block
        assert len(student.generate(["1,2,3,6"], sampler, seeds=[0]).texts) == 1
    # the raw checkpoint kept causal attention: the run changed the student's config only
    assert load_pretrained(causal).model.config.attention_block == 0
    bidirectional = pretrain.run(pretrain_config(tmp_path / "bi", "model.backbone=llama", "model.n_heads=1",
                                                 f"init_from={ar_dir}", "semi_ar=1.0", "train.steps=1"))
    with pytest.raises(ValueError, match="block_causal"):
        sdtt.run(sdtt_config(tmp_path / "bad", bidirectional, "semi_ar=1.0", "eval.block_length=1",
                             "min_steps=16", "teacher_steps=32", "block_causal=true"))
