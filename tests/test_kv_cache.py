"""Fast-dLLM's approximate key/value caches for bidirectional denoisers (``sampler.kv_cache``).

The caches are approximate in general, so the tests pin what is exact:

* a whole-sequence ``forward_replace`` is the model's forward, and a span over
  unchanged tokens reads the forward's logits back;
* in a one-layer model a column's keys and values depend on its own token only, so
  reusing them for columns whose tokens did not change is exact: the cached sampler
  must return the uncached tokens (and with two layers it does not, so the check
  can tell the caches apart);
* what each step runs: the whole sequence at a block's first step, then the block
  ("dual") or the block and everything after it ("prefix").
"""
from __future__ import annotations

import pytest
import torch
from llama_fixtures import MASK, V, three_prompt_batch

from sdtt_search.diffusion import SamplerConfig
from sdtt_search.diffusion.rng import RowRNG
from sdtt_search.diffusion.samplers import confidence_sample, sample
from sdtt_search.model import ModelConfig, build_denoiser


def _model(backbone: str, layers: int = 2, causal: bool = False, time_conditioning: bool = False):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=V, hidden_size=32, n_layers=layers, n_heads=2, mlp_ratio=2, cond_dim=16,
                      backbone=backbone, mask_id=MASK, causal=causal, time_conditioning=time_conditioning)
    model = build_denoiser(cfg).eval()
    with torch.no_grad():  # varied weights (the DiT's adaLN and output layer start at zero)
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.3)
    return model


def _filled(batch, seed: int = 4) -> torch.Tensor:
    x = batch.x.clone()
    x[batch.gen_mask] = torch.randint(2, V, (int(batch.gen_mask.sum()),), generator=torch.Generator().manual_seed(seed))
    return x


@pytest.mark.parametrize("backbone", ["dit", "llama"])
def test_a_whole_sequence_call_is_the_forward_and_a_span_of_unchanged_tokens_reads_it_back(backbone):
    model, batch = _model(backbone), three_prompt_batch()
    x, real = _filled(batch), batch.attention_mask
    with torch.no_grad():
        full = model(x, attention_mask=real)
        cache = model.new_replace_cache()
        whole = model.forward_replace(x, real, 0, x.shape[1], cache)
        assert torch.allclose(whole[real], full[real], atol=1e-5)  # padding columns are never read
        for start, stop in ((5, 9), (9, x.shape[1]), (1, 4)):
            span = model.forward_replace(x, real, start, stop, cache)
            assert torch.allclose(span[real[:, start:stop]], full[:, start:stop][real[:, start:stop]], atol=1e-5)


@pytest.mark.parametrize("backbone", ["dit", "llama"])
def test_a_span_after_a_change_attends_to_the_stale_keys_of_the_other_columns(backbone):
    """Changing a token in the span: with one layer the other columns' keys do not
    depend on it (exact); with two they do, and the cache keeps the stale ones."""
    for layers, exact in ((1, True), (2, False)):
        model, batch = _model(backbone, layers), three_prompt_batch()
        x, real = _filled(batch), batch.attention_mask
        start, stop = 8, 12
        with torch.no_grad():
            cache = model.new_replace_cache()
            model.forward_replace(x, real, 0, x.shape[1], cache)
            x2 = x.clone()
            x2[:, 9] = MASK
            span = model.forward_replace(x2, real, start, stop, cache)
            full = model(x2, attention_mask=real)[:, start:stop]
        assert torch.allclose(span, full, atol=1e-5) == exact, (backbone, layers)


def _decode(model, batch, kv_cache, *, steps=8, block=3, threshold=None, temperature=1.0, kv_refresh=None):
    return confidence_sample(model, batch.x, batch.gen_mask, batch.attention_mask, mask_id=MASK,
                             rng=RowRNG([11, 12, 13]), steps=steps, temperature=temperature, block_length=block,
                             threshold=threshold, kv_cache=kv_cache, kv_refresh=kv_refresh)


@pytest.mark.parametrize("backbone", ["dit", "llama"])
@pytest.mark.parametrize("kv_cache", ["prefix", "dual"])
@pytest.mark.parametrize("steps,block,threshold,temperature", [(9, 3, None, 1.0), (6, 3, 0.5, 1.0), (4, None, None, 0.7)])
def test_one_layer_caches_return_the_uncached_tokens(backbone, kv_cache, steps, block, threshold, temperature):
    model, batch = _model(backbone, layers=1), three_prompt_batch()
    plain = _decode(model, batch, None, steps=steps, block=block, threshold=threshold, temperature=temperature)
    cached = _decode(model, batch, kv_cache, steps=steps, block=block, threshold=threshold, temperature=temperature)
    assert torch.equal(plain.tokens, cached.tokens)
    assert torch.allclose(plain.token_logprobs, cached.token_logprobs, atol=1e-6)
    assert cached.nfe == plain.nfe
    # the samples depend on the context (else equality would hold for any cache)
    assert len({tuple(r) for r in cached.tokens[:, -9:].tolist()}) > 1


@pytest.mark.parametrize("kv_cache", ["prefix", "dual"])
def test_deeper_caches_keep_the_prompt_fill_every_mask_and_differ_from_the_exact_decode(kv_cache):
    model, batch = _model("llama", layers=2), three_prompt_batch(gen_length=12)
    outs = [_decode(model, batch, c, steps=12, block=4) for c in (None, kv_cache)]
    plain, cached = outs
    prompt = batch.attention_mask & ~batch.gen_mask
    assert torch.equal(cached.tokens[prompt], batch.x[prompt]) and not (cached.tokens[batch.gen_mask] == MASK).any()
    assert torch.equal(cached.tokens[:, :-12], batch.x[:, :-12])
    # the first block's first step is exact; later steps attend to stale keys
    assert not torch.equal(plain.tokens, cached.tokens)


@pytest.mark.parametrize("kv_cache,expected", [
    (None, [(0, 16)] * 6),
    ("dual", [(0, 16), (7, 10), (7, 10), (0, 16), (10, 13), (10, 13), (0, 16), (13, 16), (13, 16)]),
    ("prefix", [(0, 16), (7, 16), (7, 16), (0, 16), (10, 16), (10, 16), (0, 16), (13, 16), (13, 16)]),
])
def test_each_step_runs_the_whole_sequence_at_a_blocks_start_then_the_block(kv_cache, expected, monkeypatch):
    model, batch = _model("llama"), three_prompt_batch()  # 16 columns, generated ones 7..15, blocks of 3
    spans, kept = [], []
    forward_replace = type(model).forward_replace

    def recording(self, input_ids, attention_mask, start, stop, cache, keep=None):
        spans.append((start, stop))
        kept.append(keep)
        return forward_replace(self, input_ids, attention_mask, start, stop, cache, keep)

    monkeypatch.setattr(type(model), "forward_replace", recording)
    steps = 6 if kv_cache is None else 9
    if kv_cache is None:  # no cache: every step is one whole forward (counted by the hook below)
        calls = []
        model.register_forward_hook(lambda module, args, out: calls.append((0, args[0].shape[1])))
        _decode(model, batch, None, steps=steps, block=3)
        assert calls == expected and spans == []
    else:
        out = _decode(model, batch, kv_cache, steps=steps, block=3)
        assert spans == expected and out.nfe == len(expected)
        assert kept == [(7, 10)] * 3 + [(10, 13)] * 3 + [(13, 16)] * 3  # the head runs on the block alone


def test_bad_uses_are_one_line_errors():
    batch = three_prompt_batch()
    with pytest.raises(ValueError, match="exact prefix cache"):  # a causal denoiser
        _decode(_model("llama", causal=True), batch, "dual")
    with pytest.raises(ValueError, match="time conditioning"):
        _decode(_model("dit", time_conditioning=True), batch, "dual")
    with pytest.raises(ValueError, match="prefix, dual"):
        _decode(_model("dit"), batch, "triple")
    with pytest.raises(ValueError, match="method=confidence"):
        SamplerConfig(method="ancestral", kv_cache="dual")
    with pytest.raises(ValueError, match="sampler.kv_cache"):
        SamplerConfig(method="confidence", kv_cache="both")
    config = SamplerConfig(method="confidence", steps=9, block_length=3, kv_cache="dual")
    assert SamplerConfig.from_dict(config.to_dict()) == config
    assert "kv_cache" not in SamplerConfig(method="confidence").to_dict()  # old runs' saved configs still match
    out = sample(_model("dit"), batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=MASK, seeds=[1, 2, 3])
    assert not (out.tokens[batch.gen_mask] == MASK).any()


def _stale_reference(model, x_old, x_new, real, start, stop):
    """Fast-dLLM's dual cache written out for a DiT: every layer's keys and values of
    the columns outside [start, stop) are those of the forward on ``x_old``; the span's
    queries, keys and values come from ``x_new``. Logits [B, stop - start, V]."""
    import torch.nn.functional as F

    from sdtt_search.model.attention import padding_layout
    from sdtt_search.model.dit import modulate
    from sdtt_search.model.rotary import apply_rotary, rotary_tables

    positions, _ = padding_layout(x_old, real)
    cos, sin = rotary_tables(positions, model.config.head_dim)
    c = F.silu(model.sigma_map(torch.zeros(x_old.shape[0])))
    old, new = model.vocab_embed(x_old), model.vocab_embed(x_new)
    outside = torch.ones(x_old.shape[1], dtype=torch.bool)
    outside[start:stop] = False
    for block in model.blocks:
        shift1, scale1, gate1, shift2, scale2, gate2 = block.adaLN_modulation(c).chunk(6, dim=-1)

        def qkv(h):
            b, n, w = h.shape
            q, k, v = block.attn_qkv(modulate(block.norm1(h), shift1, scale1)).view(b, n, 3, block.n_heads, -1).unbind(2)
            return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

        def rest(h, a):
            h = h + gate1[:, None] * block.attn_out(a.reshape(h.shape))
            return h + gate2[:, None] * block.mlp(modulate(block.norm2(h), shift2, scale2))

        mask = real[:, None, None, :]
        q_old, k_old, v_old = qkv(old)
        q_new, k_new, v_new = qkv(new)
        k_new[:, outside], v_new[:, outside] = k_old[:, outside], v_old[:, outside]
        attend = lambda q, k, v: F.scaled_dot_product_attention(  # noqa: E731
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask).transpose(1, 2)
        old, new = rest(old, attend(q_old, k_old, v_old)), rest(new, attend(q_new, k_new, v_new))
    return model.output_layer(new, c).float()[:, start:stop]


def test_a_deep_dual_cache_equals_fast_dllms_definition_written_out():
    """Three layers: the span's logits are those of a forward whose other columns keep,
    in every layer, the keys and values of the cached forward (a bug in where the
    span's keys go, or in which ones are stale, would break it)."""
    model, batch = _model("dit", layers=3), three_prompt_batch()
    x_old, real = batch.x, batch.attention_mask
    x_new = _filled(batch)
    x_new[:, 12:] = MASK  # the span commits columns 7..11, the rest stays masked
    with torch.no_grad():
        cache = model.new_replace_cache()
        model.forward_replace(x_old, real, 0, x_old.shape[1], cache)
        span = model.forward_replace(x_new, real, 7, 12, cache)
        expected = _stale_reference(model, x_old, x_new, real, 7, 12)
        exact = model(x_new, attention_mask=real)[:, 7:12]
    assert torch.allclose(span, expected, atol=1e-5)
    assert not torch.allclose(span, exact, atol=1e-3)  # and it is an approximation


@pytest.mark.parametrize("kv_cache", ["prefix", "dual"])
def test_a_cached_row_decodes_as_it_does_alone(kv_cache):
    """Rows of different prompt lengths in one batch give the tokens each gives alone
    (Fast-dLLM's released cache was reported to break or change results with batch
    size: its issues #7, #39)."""
    from llama_fixtures import PAD

    from sdtt_search.diffusion.batching import build_batch

    model, batch = _model("llama", layers=2), three_prompt_batch(gen_length=12)
    together = _decode(model, batch, kv_cache, steps=12, block=4)
    for row in range(3):
        prompt = batch.x[row][batch.attention_mask[row] & ~batch.gen_mask[row]].tolist()
        alone = build_batch([prompt], 12, pad_id=PAD, mask_id=MASK)
        out = confidence_sample(model, alone.x, alone.gen_mask, alone.attention_mask, mask_id=MASK,
                                rng=RowRNG([11 + row]), steps=12, temperature=1.0, block_length=4, kv_cache=kv_cache)
        assert out.tokens[0, -12:].tolist() == together.tokens[row, -12:].tolist()


@pytest.mark.parametrize("kind", ["dit", "llama", "llada", "dream"])
def test_kept_columns_are_the_span_logits_they_select(kind):
    """``keep`` only narrows what the head runs on (shifted models included)."""
    if kind in ("dit", "llama"):
        model = _model(kind)
    else:
        from test_hf_native import DREAM_TOY, TOY, _weights

        from sdtt_search.hf.dream import DreamNetwork
        from sdtt_search.hf.llada import LLaDANetwork

        cls, config = (LLaDANetwork, {**TOY, "vocab_size": V, "embedding_size": V}) if kind == "llada" else (
            DreamNetwork, {**DREAM_TOY, "vocab_size": V})
        model = cls(config, MASK)
        model.load_state_dict(_weights({**config, "mask_token_id": MASK}, network=cls))
    batch = three_prompt_batch()
    x, real = _filled(batch), batch.attention_mask
    with torch.no_grad():
        cache = model.new_replace_cache()
        whole = model.forward_replace(x, real, 0, x.shape[1], cache)
        assert torch.allclose(model.forward_replace(x, real, 0, x.shape[1], cache, keep=(7, 10)), whole[:, 7:10],
                              atol=1e-6)
        span = model.forward_replace(x, real, 7, 16, cache)
        assert torch.allclose(model.forward_replace(x, real, 7, 16, cache, keep=(10, 13)), span[:, 3:6], atol=1e-6)
        with pytest.raises(ValueError, match="inside the span"):
            model.forward_replace(x, real, 7, 16, cache, keep=(5, 9))


def test_the_benchmark_runs_both_parts_on_tiny_settings(monkeypatch, capsys):
    """benchmarks.kv_cache: a speed table per batch and cache, an accuracy table whose
    uncached row agrees with itself, a one-line refusal of a GPU run without a GPU."""
    import sys

    from benchmarks import kv_cache as bench

    monkeypatch.setattr(sys, "argv", ["kv_cache.py", "speed", "--batch", "1", "2", "--prompt", "8", "--gen", "8",
                                      "--block", "4", "--steps", "8", "--repeats", "1"])
    bench.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "batch" not in line]
    assert [r.split(" | ")[1] for r in rows] == ["none", "prefix", "dual"] * 2
    assert all(r.endswith("x |") for r in rows) and rows[0].endswith("| 1.00x |")
    monkeypatch.setattr(sys, "argv", ["kv_cache.py", "accuracy", "sudoku4-sdtt-4", "--problems", "4", "--samples", "2",
                                      "--steps", "8", "--block", "9", "--refresh", "1"])
    bench.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "kv_cache" not in line]
    assert [r.split(" | ")[0] for r in rows] == ["| none", "| prefix", "| dual", "| dual, refresh every 1"]
    assert "| 1.000 |" in rows[0] and "| 1.000 |" in rows[3]  # refreshing every step: the uncached characters
    if not torch.cuda.is_available():
        monkeypatch.setattr(sys, "argv", ["kv_cache.py", "speed", "--device", "cuda"])
        with pytest.raises(SystemExit, match="no CUDA GPU"):
            bench.main()


@pytest.mark.parametrize("kv_cache", ["prefix", "dual"])
def test_refreshing_every_step_gives_the_uncached_tokens_and_every_second_alternates(kv_cache, monkeypatch):
    model, batch = _model("llama", layers=2), three_prompt_batch(gen_length=12)
    plain = _decode(model, batch, None, steps=12, block=4)
    assert torch.equal(_decode(model, batch, kv_cache, steps=12, block=4, kv_refresh=1).tokens, plain.tokens)
    assert not torch.equal(_decode(model, batch, kv_cache, steps=12, block=4).tokens, plain.tokens)
    spans = []
    forward_replace = type(model).forward_replace

    def recording(self, input_ids, attention_mask, start, stop, cache, keep=None):
        spans.append((start, stop))
        return forward_replace(self, input_ids, attention_mask, start, stop, cache, keep)

    monkeypatch.setattr(type(model), "forward_replace", recording)
    _decode(model, three_prompt_batch(), kv_cache, steps=9, block=3, kv_refresh=2)  # 16 columns, blocks 7-9, 10-12, 13-15
    end = {"dual": lambda b: b + 3, "prefix": lambda b: 16}[kv_cache]
    assert spans == [s for b in (7, 10, 13) for s in ((0, 16), (b, end(b)), (0, 16))]


def test_bad_refresh_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="sampler.kv_refresh"):
        SamplerConfig(method="confidence", kv_refresh=2)  # no cache to refresh
    with pytest.raises(ValueError, match="positive integer"):
        SamplerConfig(method="confidence", kv_cache="dual", kv_refresh=0)
    with pytest.raises(ValueError, match="kv_refresh"):
        _decode(_model("dit"), three_prompt_batch(), None, kv_refresh=2)
    assert "kv_refresh" not in SamplerConfig(method="confidence", kv_cache="dual").to_dict()
    config = SamplerConfig(method="confidence", kv_cache="dual", kv_refresh=3)
    assert SamplerConfig.from_dict(config.to_dict()) == config
