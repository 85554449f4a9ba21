"""LLaDA- and Dream-like models through ``load_model("hf:<dir>")``: remote code opt-in, logits
(shift / no shift), padding, prompts kept, chat prompts, defaults, dtype policy."""
from __future__ import annotations

import pytest
import torch
from test_hf_fixtures import dream_dir, llada_dir, single_thread  # noqa: F401 - pytest fixtures

from sdtt_search import SamplerConfig, load_model
from sdtt_search.diffusion import build_batch, sample
from sdtt_search.hf import ANSWER_FORMATS

PROMPTS = ["Question: What is 2+2?\nAnswer:", "Q: hi", "Question: Tom has 3 apples and buys 2 more.\nAnswer:"]
SAMPLER = SamplerConfig(method="confidence", steps=8, gen_length=8, block_length=4, temperature=1.0)


def _load(path, **kwargs):
    return load_model(f"hf:{path}", trust_remote_code=True, **kwargs)


def test_remote_code_needs_explicit_opt_in(llada_dir):  # noqa: F811
    with pytest.raises(ValueError) as err:
        load_model(f"hf:{llada_dir}")
    message = str(err.value)
    assert "\n" not in message
    assert "trust_remote_code=true (CLI)" in message and "trust_remote_code=True (API)" in message


def test_llada_logits_are_used_as_is(llada_dir):  # noqa: F811
    model = _load(llada_dir)
    assert model.family == "llada" and model.model.config.mask_id == model.tokenizer.mask_id == 4
    assert model.model.config.time_conditioning is False
    ids = torch.randint(5, 100, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw = model.model.network(input_ids=ids).logits
        logits = model.model(ids)
    assert logits.dtype == torch.float32 and logits.shape == raw.shape
    assert torch.equal(logits, raw.float())


def test_dream_logits_are_shifted_by_one(dream_dir):  # noqa: F811
    model = _load(dream_dir)
    assert model.family == "dream" and model.model.config.shift_logits
    ids = torch.randint(5, 100, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        raw = model.model.network(input_ids=ids).logits.float()
        logits = model.model(ids)
    expected = torch.empty_like(raw)  # by hand: column i holds the output at i - 1; column 0 its own
    expected[:, 0] = raw[:, 0]
    for i in range(1, ids.shape[1]):
        expected[:, i] = raw[:, i - 1]
    assert torch.equal(logits, expected)
    assert not torch.allclose(logits[:, 1:], raw[:, 1:])


@pytest.mark.parametrize("fixture", ["llada_dir", "dream_dir"])
def test_padded_rows_get_the_logits_they_get_alone(fixture, request):
    model = _load(request.getfixturevalue(fixture))
    tok = model.tokenizer
    batch = build_batch([tok.encode(p) for p in PROMPTS], 6, pad_id=tok.pad_id, mask_id=tok.mask_id)
    assert not bool(batch.attention_mask.all())  # prompts differ in length: there is padding
    with torch.no_grad():
        together = model.model(batch.x, attention_mask=batch.attention_mask)
        for row, prompt in enumerate(PROMPTS):
            alone_batch = build_batch([tok.encode(prompt)], 6, pad_id=tok.pad_id, mask_id=tok.mask_id)
            alone = model.model(alone_batch.x, attention_mask=alone_batch.attention_mask)
            width = alone.shape[1]
            torch.testing.assert_close(together[row, -width:], alone[0], rtol=1e-5, atol=1e-5)
            assert not together[row, :-width].any()  # padding columns are zeros


@pytest.mark.parametrize("fixture", ["llada_dir", "dream_dir"])
def test_batch_of_several_prompts_equals_each_prompt_alone(fixture, request):
    model = _load(request.getfixturevalue(fixture))
    seeds = [11, 12, 13]
    together = model.generate(PROMPTS, SAMPLER, seeds=seeds)
    for row, (prompt, seed) in enumerate(zip(PROMPTS, seeds)):
        alone = model.generate([prompt], SAMPLER, seeds=[seed])
        assert together.texts[row] == alone.texts[0]
        assert together.logprobs[row] == pytest.approx(alone.logprobs[0], abs=1e-6)


def test_sampling_keeps_prompt_tokens_and_fills_every_mask(llada_dir):  # noqa: F811
    model = _load(llada_dir)
    tok = model.tokenizer
    batch = build_batch([tok.encode(p) for p in PROMPTS], 8, pad_id=tok.pad_id, mask_id=tok.mask_id)
    for config in (SAMPLER, SamplerConfig(method="ancestral", steps=4, gen_length=8),
                   SamplerConfig(method="confidence", steps=8, gen_length=8, block_length=4, threshold=0.9)):
        out = sample(model.model, batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=tok.mask_id,
                     seeds=[0, 1, 2])
        assert torch.equal(out.tokens[~batch.gen_mask], batch.x[~batch.gen_mask])
        assert not (out.tokens[batch.gen_mask] == tok.mask_id).any()


def test_chat_template_and_answer_format(llada_dir):  # noqa: F811
    model = _load(llada_dir, hf_options={"answer_format": "hash"})
    assert model.prompt_format.chat  # the tokenizer has a template: used by default
    text = model.format_prompt("Question: What is 2+2?\nAnswer:")
    expected_user = "Question: What is 2+2?\n\n" + ANSWER_FORMATS["hash"]
    assert text == model.tokenizer.hf.apply_chat_template([{"role": "user", "content": expected_user}],
                                                          tokenize=False, add_generation_prompt=True)
    assert text.startswith("<bos><|user|>") and text.endswith("<|assistant|>")
    ids = model.tokenizer.for_chat().encode(text)
    assert ids[0] == model.tokenizer.bos_id and ids.count(model.tokenizer.bos_id) == 1  # template's BOS, not doubled
    boxed = _load(llada_dir, hf_options={"answer_format": "boxed", "system_prompt": "Be brief."})
    assert "\\boxed{}" in boxed.format_prompt("Q?") and "<|system|>Be brief." in boxed.format_prompt("Q?")
    plain = _load(llada_dir, hf_options={"chat": False})
    assert plain.format_prompt("Question: q\nAnswer:") == "Question: q\nAnswer:"
    with pytest.raises(ValueError, match="answer_format"):
        _load(llada_dir, hf_options={"answer_format": "latex"})


def test_answers_stop_at_end_of_turn(llada_dir):  # noqa: F811
    tok = _load(llada_dir).tokenizer
    eot = tok.hf.convert_tokens_to_ids("<|eot_id|>")
    assert {eot, tok.eos_id} <= tok.stop_ids
    ids = tok.encode("#### 5") + [eot] + tok.encode("junk") + [tok.mask_id]
    assert tok.decode(ids) == "#### 5"
    assert tok.decode(tok.encode("ab") + [tok.mask_id, tok.pad_id] + tok.encode("c")) == "abc"


def test_default_samplers_are_the_authors(llada_dir, dream_dir):  # noqa: F811
    llada = _load(llada_dir).default_sampler()
    assert (llada.method, llada.gen_length, llada.block_length, llada.steps, llada.remasking, llada.temperature,
            llada.threshold) == ("confidence", 256, 32, 256, "low_confidence", 0.0, None)
    assert _load(llada_dir).default_sampler(threshold=0.9).threshold == 0.9
    dream = _load(dream_dir).default_sampler()
    assert (dream.method, dream.gen_length, dream.block_length, dream.steps) == ("confidence", 256, None, 256)


def test_cpu_float32_is_refused_above_the_size_limit(llada_dir, monkeypatch):  # noqa: F811
    monkeypatch.setattr("sdtt_search.hf.precision.CPU_FP32_MAX_PARAMS", 1000)
    with pytest.raises(ValueError) as err:
        _load(llada_dir, device="cpu")
    assert "\n" not in str(err.value) and "device=cuda" in str(err.value) and "dtype=bfloat16" in str(err.value)
    model = _load(llada_dir, device="cpu", dtype="bfloat16")  # asked for explicitly: allowed
    assert next(model.model.parameters()).dtype == torch.bfloat16
    assert model.model(torch.tensor([[5, 6, 7]])).dtype == torch.float32


def test_describe_only_reads_no_weights(llada_dir):  # noqa: F811
    model = _load(llada_dir, device="meta")
    assert model.model is None and model.family == "llada" and model.meta["parameters"] > 0
    assert model.default_sampler().block_length == 32
    with pytest.raises(RuntimeError, match="only described"):
        model.generate(["q"], SAMPLER, seeds=[0])


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@cuda
def test_cuda_runs_bf16_by_default_and_keeps_rows_independent(llada_dir, dream_dir):  # noqa: F811
    for path in (llada_dir, dream_dir):
        model = _load(path, device="cuda")
        assert next(model.model.parameters()).dtype == torch.bfloat16 and model.meta["dtype"] == "bfloat16"
        tok = model.tokenizer
        batch = build_batch([tok.encode(p) for p in PROMPTS], 8, pad_id=tok.pad_id, mask_id=tok.mask_id, device="cuda")
        out = sample(model.model, batch.x, batch.gen_mask, batch.attention_mask, SAMPLER, mask_id=tok.mask_id,
                     seeds=[0, 1, 2])
        assert torch.equal(out.tokens[~batch.gen_mask], batch.x[~batch.gen_mask])
        assert not (out.tokens[batch.gen_mask] == tok.mask_id).any()
        with torch.no_grad():
            logits = model.model(batch.x, attention_mask=batch.attention_mask)
        assert logits.dtype == torch.float32 and torch.isfinite(logits[batch.attention_mask]).all()
