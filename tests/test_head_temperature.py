"""A hotter head (``SamplerConfig.head_tokens`` / ``head_temperature``): the first
generated tokens are drawn at their own temperature, the rest at ``temperature``, in
every sampler and AR backend."""
from __future__ import annotations

import math

import pytest
import torch
from ar_fixtures import greedy_reference, tiny_ar
from fakes import ContextModel, FixedModel

from sdtt_search import load_model
from sdtt_search.ar.backends import SeededTokenPicker
from sdtt_search.diffusion import SamplerConfig, build_batch, sample

V, MASK, PAD = 12, 11, 0
LOGITS = torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5, -30.0, -30.0, -30.0, -30.0, -30.0, -30.0, 5.0])


def _tempered(temperature: float) -> torch.Tensor:
    logits = LOGITS.double().clone()
    logits[MASK] = -math.inf
    return torch.softmax(logits / temperature, -1)


@pytest.mark.parametrize("config", [
    SamplerConfig(method="ancestral", steps=4, temperature=0.5, head_tokens=2, head_temperature=2.0),
    # left_to_right commits by position, so a column's token is its draw (no selection by confidence)
    SamplerConfig(method="confidence", steps=4, temperature=0.5, remasking="left_to_right", head_tokens=2,
                  head_temperature=2.0),
], ids=["ancestral", "confidence"])
def test_head_columns_follow_the_head_temperature_and_the_rest_the_temperature(config):
    rows = 6000
    batch = build_batch([[1, 2]] * rows, 4, pad_id=PAD, mask_id=MASK)
    out = sample(FixedModel(LOGITS), batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=MASK,
                 seeds=range(rows))
    generated = out.tokens[:, -4:]
    tolerance = 4 * math.sqrt(0.25 / rows)
    for column in range(4):
        freq = torch.bincount(generated[:, column], minlength=V).double() / rows
        expected = _tempered(2.0 if column < 2 else 0.5)
        assert torch.allclose(freq[:5], expected[:5], atol=tolerance), (column, freq[:5], expected[:5])


@pytest.mark.parametrize("method", ["ancestral", "confidence"])
def test_a_head_at_the_temperature_changes_nothing(method):
    batch = build_batch([[3, 4], [5], [6, 7, 8]], 8, pad_id=PAD, mask_id=MASK)
    plain = SamplerConfig(method=method, steps=5, temperature=0.8)
    headed = SamplerConfig(method=method, steps=5, temperature=0.8, head_tokens=3, head_temperature=0.8)
    a = sample(ContextModel(V, MASK), batch.x, batch.gen_mask, batch.attention_mask, plain, mask_id=MASK, seeds=[1, 2, 3])
    b = sample(ContextModel(V, MASK), batch.x, batch.gen_mask, batch.attention_mask, headed, mask_id=MASK, seeds=[1, 2, 3])
    assert torch.equal(a.tokens, b.tokens)


def test_a_greedy_head_gives_every_seed_the_same_first_tokens_and_only_those():
    rows = 32
    batch = build_batch([[3, 4]] * rows, 6, pad_id=PAD, mask_id=MASK)
    config = SamplerConfig(method="confidence", steps=6, temperature=1.0, remasking="left_to_right", head_tokens=2,
                           head_temperature=0.0)
    out = sample(ContextModel(V, MASK), batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=MASK,
                 seeds=range(rows))
    generated = out.tokens[:, -6:]
    assert (generated[:, :2] == generated[0, :2]).all()
    assert len({tuple(r) for r in generated[:, 2:].tolist()}) > 1  # the tail is still sampled


def test_head_options_are_checked_with_one_line_errors():
    for bad, field in [(dict(head_tokens=-1, head_temperature=1.0), "head_tokens"),
                       (dict(head_tokens=True, head_temperature=1.0), "head_tokens"),
                       (dict(head_tokens=2, head_temperature=-0.5), "head_temperature"),
                       (dict(head_tokens=2), "head_temperature"),
                       (dict(head_temperature=1.5), "head_tokens")]:
        with pytest.raises(ValueError) as err:
            SamplerConfig(**bad)
        assert "\n" not in str(err.value) and field in str(err.value)
    config = SamplerConfig(temperature=0.7, head_tokens=2, head_temperature=1.5)
    assert [config.temperature_at(i) for i in range(4)] == [1.5, 1.5, 0.7, 0.7]
    assert SamplerConfig.from_dict(config.to_dict()) == config


def test_token_picker_uses_the_head_temperature_for_the_first_steps():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    rows = 20000
    scores = probs.log().expand(rows, 4).clone()
    picker = SeededTokenPicker(range(rows), prompt_width=3, temperature=1.0, top_p=1.0, device="cpu", head_tokens=1,
                               head_temperature=3.0)
    for width, temperature in [(3, 3.0), (4, 1.0)]:  # step 0 is in the head, step 1 is not
        chosen = picker(torch.zeros(rows, width, dtype=torch.long), scores).argmax(-1)
        target = probs ** (1 / temperature)
        freq = torch.bincount(chosen, minlength=4).double() / rows
        assert torch.allclose(freq, (target / target.sum()).double(), atol=4 * math.sqrt(0.25 / rows)), (width, freq)


def test_transformers_backend_greedy_head_is_the_greedy_decode(tmp_path):
    from sdtt_search.ar import load_ar_pretrained

    tiny_ar(tmp_path / "ar")
    model = load_model(tmp_path / "ar", ar_backend="transformers")
    tok = model.tokenizer
    config = SamplerConfig(method="autoregressive", temperature=1.0, gen_length=10, head_tokens=3, head_temperature=0.0)
    out = model.generate(["12+3="] * 8, config, seeds=range(8))
    greedy = greedy_reference(load_ar_pretrained(tmp_path / "ar").model, tok.encode("12+3="), 3, tok.eos_id)
    assert all(text.startswith(tok.decode(greedy)) for text in out.texts)
    plain = model.generate(["12+3="] * 8, SamplerConfig(method="autoregressive", gen_length=10), seeds=range(8))
    assert not all(text.startswith(tok.decode(greedy)) for text in plain.texts)  # without the head they differ
    assert len(set(out.texts)) > 1  # the tail is still sampled
