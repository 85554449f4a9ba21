"""LLaDA's and Dream's networks built here (``sdtt_search.hf.llada`` / ``.dream``): the
released code's logits, hub key names and shards, no remote code, left padding,
Fast-dLLM's caches, errors."""
from __future__ import annotations

import json

import pytest
import torch
from test_hf_fixtures import gsm8k_file, save_tokenizer, single_thread  # noqa: F401 - pytest fixtures

from sdtt_search import SamplerConfig, Search, load_model
from sdtt_search.diffusion import build_batch
from sdtt_search.diffusion.rng import RowRNG
from sdtt_search.diffusion.samplers import confidence_sample
from sdtt_search.hf.dream import DreamNetwork
from sdtt_search.hf.llada import LLaDANetwork, native_reason

#: LLaDA-8B's configuration fields, at toy sizes (grouped KV heads, padded embedding)
TOY = dict(d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, mlp_hidden_size=48, vocab_size=60, embedding_size=64,
           rope=True, rope_theta=500000.0, block_type="llama", activation_type="silu", layer_norm_type="rms",
           rms_norm_eps=1e-5, include_bias=False, include_qkv_bias=False, weight_tying=False, max_sequence_length=64,
           mask_token_id=59, alibi=False, flash_attention=False, attention_dropout=0.0, residual_dropout=0.0,
           embedding_dropout=0.0, input_emb_norm=False, scale_logits=False)
#: Dream-v0's (Qwen2) configuration fields, at toy sizes
DREAM_TOY = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, hidden_act="silu", max_position_embeddings=64, rms_norm_eps=1e-6,
                 tie_word_embeddings=False, rope_theta=1000000.0, rope_scaling=None, use_sliding_window=False,
                 attention_dropout=0.0, mask_token_id=63, pad_token_id=0)


def _weights(config: dict, seed: int = 0, std: float = 0.3, network=LLaDANetwork) -> dict[str, torch.Tensor]:
    """Random weights under the hub's key names, drawn in sorted key order."""
    with torch.device("meta"):
        shapes = network(config, config["mask_token_id"]).state_dict()
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * std for k, v in sorted(shapes.items())}


def test_logits_match_the_released_modelling_code():
    """Golden values from the Fast-dLLM repository's modeling_llada.py (LLaDAModelLM), run
    once on these weights and ids (transformers 5.24 needed use_cache=False passed to its
    config and forward); this module gave the same logits to the last bit."""
    network = LLaDANetwork(TOY, 59)
    network.load_state_dict(_weights(TOY))
    ids = torch.tensor([[25, 59, 24, 8, 43, 13, 11, 41, 59, 12], [8, 9, 16, 23, 13, 0, 42, 21, 2, 16]])
    with torch.no_grad():
        logits = network(ids)
    assert logits.shape == (2, 10, 64) and logits.dtype == torch.float32
    assert torch.allclose(logits[0, 0, :6], torch.tensor([-0.23273, 0.26857, -0.07184, -0.18195, 0.62935, 0.11331]),
                          atol=2e-5)
    assert torch.allclose(logits[1, 9, 50:56], torch.tensor([0.98182, 1.42345, 0.699, 0.11101, 0.6294, -0.86776]),
                          atol=2e-5)
    assert logits.sum().item() == pytest.approx(-10.2955, abs=2e-3)
    assert logits.abs().sum().item() == pytest.approx(482.4683, abs=2e-3)


def test_dream_logits_match_the_released_modelling_code():
    """Golden values from the Fast-dLLM repository's modeling_dream.py (DreamModel, SDPA),
    its logits shifted by one as Dream's generation code reads them; run once on these
    weights and ids. Under transformers 5.24 that code needed two fixes to run at all
    (the "default" rotary initialiser is gone, tied keys must be a dict); this module gave
    the same logits to the last bit, with and without grouped and tied heads."""
    network = DreamNetwork(DREAM_TOY, 63)
    network.load_state_dict(_weights(DREAM_TOY, network=DreamNetwork))
    ids = torch.tensor([[37, 43, 12, 8, 63, 9, 11, 5, 15, 0], [16, 1, 12, 7, 45, 60, 6, 25, 50, 20]])
    with torch.no_grad():
        logits = network(ids)
    assert torch.allclose(logits[0, 0, :6], torch.tensor([0.13454, -0.12254, 0.23175, -0.53831, -0.01862, 0.36591]),
                          atol=2e-5)
    assert torch.allclose(logits[1, 9, 50:56], torch.tensor([1.00127, 0.17881, 0.24259, -0.05861, -0.45308, 0.36975]),
                          atol=2e-5)
    assert logits.sum().item() == pytest.approx(50.4134, abs=2e-3)
    assert logits.abs().sum().item() == pytest.approx(498.3514, abs=2e-3)


@pytest.mark.parametrize("kind", ["llada", "dream"])
@pytest.mark.parametrize("kv_cache", ["prefix", "dual"])
def test_one_layer_native_networks_decode_the_same_tokens_with_a_cache(kind, kv_cache):
    """One layer: a column's keys depend on its own token only, so the caches are exact
    (this pins the span and, for Dream, the shift of ``forward_replace``)."""
    if kind == "llada":
        config, cls, mask = {**TOY, "n_layers": 1}, LLaDANetwork, 59
    else:
        config, cls, mask = {**DREAM_TOY, "num_hidden_layers": 1}, DreamNetwork, 63
    network = cls(config, mask)
    network.load_state_dict(_weights(config, network=cls, std=0.5))
    batch = build_batch([[5, 6, 7], [9, 10, 11, 12, 13], [20]], 12, pad_id=0, mask_id=mask)
    outs = [confidence_sample(network, batch.x, batch.gen_mask, batch.attention_mask, mask_id=mask,
                              rng=RowRNG([1, 2, 3]), steps=12, temperature=1.0, block_length=4, kv_cache=c)
            for c in (None, kv_cache)]
    assert torch.equal(outs[0].tokens, outs[1].tokens)
    assert len({tuple(r) for r in outs[1].tokens[:, -12:].tolist()}) == 3


@pytest.fixture(scope="module")
def llada_checkpoint(tmp_path_factory):
    """A LLaDA-format directory as on the hub: config.json (with the auto_map of its own
    code, which is never run), two safetensors shards and their index, a tokenizer."""
    from safetensors.torch import save_file

    directory = tmp_path_factory.mktemp("hf") / "tiny-llada-native"
    directory.mkdir()
    tok = save_tokenizer(directory)
    config = {**TOY, "vocab_size": 112, "embedding_size": 112, "mask_token_id": tok.mask_token_id,
              "model_type": "llada", "architectures": ["LLaDAModelLM"],
              "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig", "AutoModel": "modeling_llada.LLaDAModelLM"}}
    (directory / "config.json").write_text(json.dumps(config))
    state = _weights(config, seed=1, std=0.5)
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for name, names in shards.items():
        save_file({k: state[k] for k in names}, str(directory / name))
    index = {"metadata": {}, "weight_map": {k: name for name, names in shards.items() for k in names}}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return directory


def test_a_llada_checkpoint_loads_natively_without_remote_code(llada_checkpoint):
    model = load_model(f"hf:{llada_checkpoint}")  # no trust_remote_code: nothing from the repository runs
    assert model.family == "llada" and model.meta["network"] == "native"
    assert isinstance(model.model, LLaDANetwork) and model.model.config.mask_id == model.tokenizer.mask_id
    reference = LLaDANetwork(json.loads((llada_checkpoint / "config.json").read_text()), model.tokenizer.mask_id)
    reference.load_state_dict(_weights(json.loads((llada_checkpoint / "config.json").read_text()), seed=1, std=0.5))
    ids = torch.randint(5, 100, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.model(ids), reference(ids))  # both shards were read, under the hub's key names


def test_padded_rows_get_the_logits_they_get_alone(llada_checkpoint):
    model = load_model(f"hf:{llada_checkpoint}")
    tok = model.tokenizer
    prompts = ["Question: What is 2+2?\nAnswer:", "Q: hi", "Question: Tom has 3 apples.\nAnswer:"]
    batch = build_batch([tok.encode(p) for p in prompts], 6, pad_id=tok.pad_id, mask_id=tok.mask_id)
    with torch.no_grad():
        together = model.model(batch.x, attention_mask=batch.attention_mask)
        for row in range(len(prompts)):
            real = batch.attention_mask[row]
            alone = model.model(batch.x[row : row + 1, real])
            assert torch.allclose(together[row, real], alone[0], atol=1e-5)


def test_search_with_fast_dllms_dual_cache(llada_checkpoint):
    model = load_model(f"hf:{llada_checkpoint}", hf_options={"chat": False})
    from tasks import load_task

    task = load_task("countdown", n=3)
    problems = task.problems("test", limit=2)
    runs = {}
    for kv_cache in (None, "dual"):
        sampler = SamplerConfig(method="confidence", steps=8, gen_length=8, block_length=4, temperature=1.0,
                                kv_cache=kv_cache)
        result = Search(model, task, sampler, batch_size=4).best_of_n(problems, n=2)
        runs[kv_cache] = [[c.text for c in r.candidates] for r in result.problems]
        assert all(len(c) == 2 for c in runs[kv_cache])
    # two layers: the dual cache is an approximation, and the two decodes differ somewhere
    assert runs[None] != runs["dual"]


def test_a_hub_diffusion_model_takes_the_native_searches(llada_checkpoint):
    # infill and predict see the formatted prompt generate sees: an infill of nothing given is generate's
    # decode, and repair, particle and order search run on a hub LLaDA as on the zoo's models
    from sdtt_search.search.order_search import OrderConfig
    from sdtt_search.search.particles import ParticleConfig
    from sdtt_search.search.repair import RepairConfig
    from tasks import load_task

    model = load_model(f"hf:{llada_checkpoint}")
    assert model.meta["chat"] is True  # the fixture's tokenizer has a chat template: prompts are formatted
    task = load_task("countdown", n=3)
    problems = task.problems("test", limit=2)
    sampler = SamplerConfig(method="confidence", steps=4, gen_length=8, block_length=4, temperature=1.0)
    prompts = [p.prompt for p in problems]
    drawn = model.generate(prompts, sampler, seeds=[3, 4])
    assert model.infill(prompts, [[None] * 8] * 2, sampler, seeds=[3, 4]).texts == drawn.texts
    assert model.predict(prompts, [[None] * 8] * 2).shape[:2] == (2, 8)
    for strategy, options in (("repair", {"repair": RepairConfig(rounds=1, steps=2)}),
                              ("smc", {"smc": ParticleConfig(every=1)}), ("order", {"order": OrderConfig(branch=2)})):
        results = Search(model, task, sampler, batch_size=4, strategy=strategy, **options).generate_problems(problems, 2)
        assert all(len(r.candidates) == 2 for r in results), strategy
    voted = Search(model, task, sampler, batch_size=4, temporal=True).generate_problems(problems, 2)
    assert all(len(c.trail) == 4 for r in voted for c in r.candidates)  # one prediction a step


def test_what_cannot_be_built_natively_is_named():
    assert native_reason(TOY) is None
    assert "block_type" in native_reason({**TOY, "block_type": "sequential"})
    assert "rope" in native_reason({**TOY, "rope": False})
    assert "LLaDA shape" in native_reason({"model_type": "llada"})
    with pytest.raises(ValueError, match="block_type"):
        LLaDANetwork({**TOY, "block_type": "sequential"}, 59)


def test_loading_errors_are_one_line(llada_checkpoint, tmp_path):
    import shutil

    sequential = tmp_path / "sequential"
    shutil.copytree(llada_checkpoint, sequential)
    config = json.loads((sequential / "config.json").read_text())
    (sequential / "config.json").write_text(json.dumps({**config, "block_type": "sequential"}))
    with pytest.raises(ValueError) as err:  # not buildable here, and remote code not allowed
        load_model(f"hf:{sequential}")
    assert "cannot be built natively: block_type" in str(err.value) and "trust_remote_code" in str(err.value)
    with pytest.raises(ValueError, match="native=true but block_type"):
        load_model(f"hf:{sequential}", hf_options={"native": True})

    wrong = tmp_path / "wrong"
    shutil.copytree(llada_checkpoint, wrong)
    (wrong / "config.json").write_text(json.dumps({**config, "mlp_hidden_size": 40}))
    with pytest.raises(ValueError) as err:
        load_model(f"hf:{wrong}")
    assert "\n" not in str(err.value) and "mis-shaped" in str(err.value) and "ff_proj" in str(err.value)

    (wrong / "model-00002-of-00002.safetensors").unlink()
    (wrong / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model-00002-of-00002.safetensors is missing"):
        load_model(f"hf:{wrong}")


def test_the_native_option_from_the_command_line():
    from omegaconf import OmegaConf

    from sdtt_search.hf import load_options_from_config

    cfg = OmegaConf.create({"hf": {"native": False}})
    assert load_options_from_config(cfg, "gsm8k")["hf_options"]["native"] is False
    with pytest.raises(ValueError, match="hf.native"):
        load_options_from_config(OmegaConf.create({"hf": {"native": "maybe"}}), "gsm8k")


def _whole_call_and_forward(network, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(a whole-sequence ``forward_replace`` into an empty cache, the plain forward) of ``batch``."""
    with torch.no_grad():
        cache = network.new_replace_cache()
        whole = network.forward_replace(batch.x, batch.attention_mask, 0, batch.x.shape[1], cache)
        return whole, network(batch.x, attention_mask=batch.attention_mask)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_in_bf16_the_dual_cache_decodes_and_a_whole_call_is_the_forward():
    network = LLaDANetwork(TOY, 59)
    network.load_state_dict(_weights(TOY))
    network = network.to("cuda", torch.bfloat16).eval()
    from sdtt_search.diffusion import sample

    batch = build_batch([[5, 6, 7, 8], [9, 10]], 16, pad_id=0, mask_id=59, device="cuda")
    whole, full = _whole_call_and_forward(network, batch)
    real = batch.attention_mask
    assert torch.allclose(whole[real], full[real], atol=1e-2)
    config = SamplerConfig(method="confidence", steps=16, gen_length=16, block_length=4, kv_cache="dual")
    out = sample(network, batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=59, seeds=[0, 1])
    assert not (out.tokens[batch.gen_mask] == 59).any() and torch.equal(out.tokens[~batch.gen_mask], batch.x[~batch.gen_mask])


def test_the_command_line_runs_llada_natively_with_the_dual_cache(llada_checkpoint, gsm8k_file, tmp_path, capsys):  # noqa: F811
    from sdtt_search import run as run_module

    def args(out, *extra):
        return ["task=gsm8k", f"task.path={gsm8k_file}", f"model=hf:{llada_checkpoint}", "samples=2", "limit=2",
                "sampler.steps=4", "sampler.gen_length=8", "sampler.block_length=4", "sampler.kv_cache=dual",
                "device=cpu", "batch_size=4", f"output_dir={out}", "plot=false", "progress=false", *extra]

    assert run_module.main(args(tmp_path / "run")) == 0  # no trust_remote_code needed
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["network"] == "native" and metrics["sampler"]["kv_cache"] == "dual"
    capsys.readouterr()
    assert run_module.main(args(tmp_path / "remote", "hf.native=false")) == 2  # the repository's code: opt in first
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "trust_remote_code=true" in err


@pytest.fixture(scope="module")
def dream_checkpoint(tmp_path_factory):
    """A Dream-format directory: config.json (model_type Dream, auto_map never run), one
    model.safetensors, a tokenizer."""
    from safetensors.torch import save_file

    directory = tmp_path_factory.mktemp("hf") / "tiny-dream-native"
    directory.mkdir()
    tok = save_tokenizer(directory)
    config = {**DREAM_TOY, "vocab_size": 112, "mask_token_id": tok.mask_token_id, "model_type": "Dream",
              "architectures": ["DreamModel"],
              "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"}}
    (directory / "config.json").write_text(json.dumps(config))
    save_file(_weights(config, seed=2, std=0.5, network=DreamNetwork), str(directory / "model.safetensors"))
    return directory


def test_a_dream_checkpoint_loads_natively_and_searches_with_the_dual_cache(dream_checkpoint):
    model = load_model(f"hf:{dream_checkpoint}", hf_options={"chat": False})
    assert model.family == "dream" and model.meta["network"] == "native" and model.model.config.shift_logits
    tok = model.tokenizer
    prompts = ["Question: What is 2+2?\nAnswer:", "Q: hi"]
    batch = build_batch([tok.encode(p) for p in prompts], 6, pad_id=tok.pad_id, mask_id=tok.mask_id)
    with torch.no_grad():
        together = model.model(batch.x, attention_mask=batch.attention_mask)
        for row in range(2):
            real = batch.attention_mask[row]
            assert torch.allclose(together[row, real], model.model(batch.x[row : row + 1, real])[0], atol=1e-5)
    from tasks import load_task

    task = load_task("countdown", n=3)
    sampler = SamplerConfig(method="confidence", steps=8, gen_length=8, block_length=4, kv_cache="dual")
    result = Search(model, task, sampler, batch_size=4).best_of_n(task.problems("test", limit=2), n=2)
    assert all(len(r.candidates) == 2 for r in result.problems)


def test_fast_dllms_full_setting_from_the_default_sampler(llada_checkpoint, dream_checkpoint):
    llada = load_model(f"hf:{llada_checkpoint}").default_sampler(threshold=0.9, kv_cache="dual")
    assert (llada.method, llada.threshold, llada.kv_cache, llada.block_length, llada.steps) == (
        "confidence", 0.9, "dual", 32, 256)
    dream = load_model(f"hf:{dream_checkpoint}").default_sampler(kv_cache="prefix")
    assert dream.threshold is None and dream.kv_cache == "prefix" and dream.block_length == 32  # Dream: one block before
    plain = load_model(f"hf:{dream_checkpoint}").default_sampler()
    assert plain.kv_cache is None and plain.block_length is None


def test_an_adapter_trained_on_the_remote_network_loads_onto_the_native_one():
    """LoRA names under a RemoteAdapter start with ``network.``; the native network holds
    the same Linear layers at the top, so a saved adapter moves across (and back)."""
    from sdtt_search.lora import LoRASpec, adapter_parameters, attach_lora, load_lora_state

    native = attach_lora(LLaDANetwork(TOY, 59), LoRASpec(r=2, alpha=4, target_modules=["q_proj", "v_proj"]))
    params = adapter_parameters(native)
    g = torch.Generator().manual_seed(0)
    remote_state = {"network." + n: torch.randn(p.shape, generator=g) for n, p in params.items()}
    load_lora_state(native, remote_state)
    for n, p in params.items():
        assert torch.equal(p.detach(), remote_state["network." + n])
    with pytest.raises(ValueError, match="do not fit"):  # anything else is still a one-line error
        load_lora_state(native, {"other." + n: v for n, v in remote_state.items()})


def test_a_native_llada_teacher_distils_with_a_lora_student(llada_checkpoint, tmp_path):
    """SDTT rounds train adapters through the native network (gradients flow; no remote
    code anywhere), and a round's checkpoint loads and samples at its steps."""
    from distill_fixtures import sdtt_config

    from distill import sdtt

    out = tmp_path / "lora"
    rows = sdtt.run(sdtt_config(out, f"hf:{llada_checkpoint}", "task.name=countdown", "+task.options.n=3",
                                "gen_length=16", "lora.r=2", "lora.target_modules=[q_proj,v_proj]",
                                "hf.options.chat=false"))
    assert [r["student_steps"] for r in rows] == [4, 2]
    model = load_model(out / "round-2-steps-2")
    assert model.meta["network"] == "native" and model.default_sampler().steps == 2
    assert model.generate(["12 34 56"], model.default_sampler(), seeds=[0]).texts


def test_mdlm_hub_weights_take_the_approximate_caches_through_their_adapter(tmp_path):
    from test_hf_fixtures import make_mdlm_checkpoint

    path, _ = make_mdlm_checkpoint(tmp_path / "mdlm")
    model = load_model(f"hf:{path}")
    adapter = model.model
    assert adapter.supports_replace_cache
    tok = model.tokenizer
    batch = build_batch([tok.encode("12 34"), tok.encode("5")], 8, pad_id=tok.pad_id, mask_id=tok.mask_id)
    whole, full = _whole_call_and_forward(adapter, batch)
    real = batch.attention_mask
    assert torch.allclose(whole[real], full[real], atol=1e-5)
    sampler = SamplerConfig(method="confidence", steps=8, gen_length=8, block_length=4, kv_cache="dual")
    out = model.generate(["12 34", "5"], sampler, seeds=[0, 1])
    assert len(out.texts) == 2 and out.nfe == 8
