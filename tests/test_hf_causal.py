"""Hugging Face causal LMs (Llama, Qwen2, Mistral, GPT-2 format) as the AR baseline behind ``load_model("hf:...")``:
tiny random checkpoints written offline, sampled by the transformers backend."""
from __future__ import annotations

import json

import pytest
import torch
from test_hf_fixtures import build_tokenizer, gsm8k_file, single_thread  # noqa: F401 - pytest fixtures

from sdtt_search import SamplerConfig, Search, load_model
from sdtt_search import run as run_module
from tasks import load_task

SAMPLER = SamplerConfig(method="autoregressive", steps=6, gen_length=6, temperature=1.0)


def _write_causal_lm(directory, arch: str, *, seed: int = 0, max_positions: int = 512, chat: bool = True,
                     width: int = 32, heads: int = 4):
    """A random tiny causal LM of ``arch`` (llama | qwen2 | mistral | gpt2) and a chat tokenizer, saved offline."""
    import transformers as tf

    tok = build_tokenizer(chat=chat, mask=False)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if arch == "gpt2":  # GPT2LMHeadModel: not named ...ForCausalLM, context in n_positions
        config_cls, model_cls = tf.GPT2Config, tf.GPT2LMHeadModel
        shape = dict(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=max_positions, **ids)
    else:
        config_cls, model_cls = {"llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
                                 "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
                                 "mistral": (tf.MistralConfig, tf.MistralForCausalLM)}[arch]
        shape = dict(vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                     num_attention_heads=heads, num_key_value_heads=2, max_position_embeddings=max_positions, **ids)
    torch.manual_seed(seed)
    model = model_cls(config_cls(**shape))
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    tok.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module", params=["llama", "qwen2", "mistral", "gpt2"])
def causal_dir(request, tmp_path_factory):
    return _write_causal_lm(tmp_path_factory.mktemp("hf-ar") / f"tiny-{request.param}", request.param)


PROMPTS = ["Question: What is 2+3?\nAnswer:", "Question: A box holds 4 pens. How many in 2 boxes?\nAnswer:",
           "Question: 10-7?\nAnswer:"]


def test_a_causal_lm_loads_as_an_ar_model(causal_dir):
    model = load_model(f"hf:{causal_dir}", hf_options={"answer_format": "hash"})
    assert model.kind == "ar" and model.backend_name == "transformers"
    assert model.context_length == 512 and model.meta["chat"] is True
    assert model.default_sampler().method == "autoregressive"
    text = model.format_prompt(PROMPTS[0])
    assert text.startswith("<bos><|user|>") and text.endswith("<|assistant|>") and "####" in text


def test_generate_is_per_seed_and_independent_of_the_batch(causal_dir):
    model = load_model(f"hf:{causal_dir}")
    together = model.generate(PROMPTS, SAMPLER, seeds=[1, 2, 3])
    assert len(together.texts) == 3 and all(isinstance(t, str) for t in together.texts)
    again = model.generate(PROMPTS, SAMPLER, seeds=[1, 2, 3])
    assert again.texts == together.texts
    alone = [model.generate([p], SAMPLER, seeds=[s]).texts[0] for p, s in zip(PROMPTS, [1, 2, 3])]
    assert alone == together.texts
    other = model.generate(PROMPTS, SAMPLER, seeds=[11, 12, 13])
    assert other.texts != together.texts


def test_completions_stop_at_eos(tmp_path):
    directory = _write_causal_lm(tmp_path / "eos", "llama", seed=2)
    model = load_model(f"hf:{directory}")
    eos = model.tokenizer.eos_id
    # every position predicts EOS
    model.backend.model.lm_head.register_forward_hook(lambda module, args, out: out.index_fill(-1, torch.tensor([eos]), 1e4))
    out = model.generate(PROMPTS[:2], SamplerConfig(method="autoregressive", steps=8, gen_length=8, temperature=0.0),
                         seeds=[0, 1])
    assert out.texts == ["", ""] and all(len(lp) == 1 for lp in out.logprobs)


def test_best_of_n_on_gsm8k(causal_dir, gsm8k_file):  # noqa: F811
    model = load_model(f"hf:{causal_dir}", hf_options={"answer_format": "hash"})
    task = load_task("gsm8k", path=str(gsm8k_file))
    problems = task.problems("test", limit=2)
    result = Search(model, task, SAMPLER, batch_size=4, seed=3).best_of_n(problems, n=2)
    assert [p.id for p in result.problems] == [p.id for p in problems]
    assert all(len(p.candidates) == 2 for p in result.problems)
    assert {"pass@1", "maj@2"} <= set(result.metrics["accuracy"])
    small = Search(model, task, SAMPLER, batch_size=1, seed=3).best_of_n(problems, n=2)
    assert [[c.text for c in p.candidates] for p in small.problems] == \
        [[c.text for c in p.candidates] for p in result.problems]


def test_run_cli_on_a_causal_lm(causal_dir, gsm8k_file, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    args = ["task=gsm8k", f"task.path={gsm8k_file}", f"model=hf:{causal_dir}", "samples=2", "limit=2",
            "sampler.gen_length=6", "device=cpu", "batch_size=4", f"output_dir={out}", "plot=false", "progress=false"]
    assert run_module.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == f"hf:{causal_dir}" and metrics["problems"] == 2 and metrics["kind"] == "ar"
    assert metrics["sampler"]["method"] == "autoregressive"


def _one_line_error(spec, **kwargs):
    with pytest.raises(ValueError) as err:
        load_model(spec, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_directory_without_weights_is_a_one_line_error(tmp_path):
    directory = _write_causal_lm(tmp_path / "noweights", "llama")
    for f in directory.glob("*.safetensors"):
        f.unlink()
    assert "has no weights" in _one_line_error(f"hf:{directory}")


def test_an_unknown_architecture_is_a_one_line_error(tmp_path):
    directory = _write_causal_lm(tmp_path / "unknown", "llama")
    config = json.loads((directory / "config.json").read_text())
    config.update(model_type="tinyunknown", architectures=["TinyUnknownForCausalLM"])
    (directory / "config.json").write_text(json.dumps(config))
    assert "unknown to this transformers" in _one_line_error(f"hf:{directory}")
    config.update(architectures=["TinyUnknownModel"])
    (directory / "config.json").write_text(json.dumps(config))
    assert "cannot tell" in _one_line_error(f"hf:{directory}")


def test_a_prompt_longer_than_the_context_is_a_one_line_error(tmp_path):
    directory = _write_causal_lm(tmp_path / "short", "qwen2", max_positions=64)
    model = load_model(f"hf:{directory}")
    with pytest.raises(ValueError) as err:
        model.generate(["x" * 100], SAMPLER, seeds=[0])
    assert "\n" not in str(err.value) and "context of 64" in str(err.value)


def test_remote_code_needs_trust(tmp_path):
    directory = _write_causal_lm(tmp_path / "remote", "llama")
    config = json.loads((directory / "config.json").read_text())
    config.update(model_type="tinyremote", architectures=["TinyRemoteForCausalLM"],
                  auto_map={"AutoModelForCausalLM": "modeling_tiny.TinyRemoteForCausalLM"})
    (directory / "config.json").write_text(json.dumps(config))
    assert "trust_remote_code=true" in _one_line_error(f"hf:{directory}")


def test_without_a_chat_template_the_prompt_is_plain(tmp_path):
    directory = _write_causal_lm(tmp_path / "plain", "llama", chat=False)
    model = load_model(f"hf:{directory}", hf_options={"answer_format": "hash"})
    assert model.meta["chat"] is False
    assert model.format_prompt(PROMPTS[0]).endswith(PROMPTS[0])


def test_vllm_without_vllm_installed_is_a_one_line_error(causal_dir, monkeypatch):
    # with vLLM installed the model is served by it (tests/test_vllm_backend.py, in CI's vLLM environment)
    import sdtt_search.ar.backends as backends

    monkeypatch.setattr(backends, "vllm_available", lambda: False)
    with pytest.raises(RuntimeError) as err:
        load_model(f"hf:{causal_dir}", ar_backend="vllm")
    assert "needs vLLM" in str(err.value) and "\n" not in str(err.value)
    assert load_model(f"hf:{causal_dir}").backend_name == "transformers"  # auto, without vLLM


def test_particle_search_extends_formatted_prompts(tmp_path):
    from sdtt_search.search.particles import ParticleConfig

    directory = _write_causal_lm(tmp_path / "smc", "llama")
    model = load_model(f"hf:{directory}")
    task = load_task("countdown", n=3)
    problems = task.problems("test", limit=2)
    sampler = SAMPLER.replace(gen_length=8)
    results = Search(model, task, sampler, strategy="smc", smc=ParticleConfig(every=4)).generate_problems(problems, 3)
    assert all(len(r.candidates) == 3 and r.particles["checks"] > 0 for r in results)
    # a particle's text is a continuation of the formatted prompt, as generate draws it
    drawn = model.extend([problems[0].prompt], [[]], sampler, seeds=[1], max_tokens=8)
    assert drawn.texts[0] == model.generate([problems[0].prompt], sampler, seeds=[1]).texts[0]


def test_completions_stop_at_end_of_turn_tokens_too(causal_dir):
    # an instruct model ends its turn with <|eot_id|> / <|im_end|> rather than EOS: any stop id ends a completion
    from sdtt_search.ar.backends import TransformersBackend

    model = load_model(f"hf:{causal_dir}", ar_backend="transformers")
    tok = model.tokenizer
    assert tok.stop_ids > {tok.eos_id} and model.backend.stop_ids == tok.stop_ids  # the fixture's <|eot_id|>
    ids = tok.encode(model.format_prompt(PROMPTS[0]))
    (free,) = model.backend.generate([ids], seeds=[3], max_tokens=6, temperature=0.0, top_p=1.0)
    first = free.token_ids[0]
    assert first not in model.backend.stop_ids
    stopping = TransformersBackend(model.backend.model, pad_id=tok.pad_id, eos_id=tok.eos_id, stop_ids=[first])
    (cut,) = stopping.generate([ids], seeds=[3], max_tokens=6, temperature=0.0, top_p=1.0)
    assert cut.token_ids == [first] and len(cut.logprobs) == 1
