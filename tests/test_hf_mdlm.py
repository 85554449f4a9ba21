"""MDLM / SDTT hub-layout checkpoints into our Denoiser, family detection, sources; the hub itself
only where the network is up (marked ``network``)."""
from __future__ import annotations

import json
import socket

import pytest
import torch
from test_hf_fixtures import make_mdlm_checkpoint, single_thread  # noqa: F401 - autouse fixture

from sdtt_search import SamplerConfig, load_model
from sdtt_search.hf import detect_family
from sdtt_search.hf.defaults import sdtt_steps
from sdtt_search.hf.source import parse_source


def _ids(vocab: int, shape=(2, 11), seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("layout", ["mdlm", "sdtt"])
def test_checkpoint_gives_the_reference_denoiser(layout, tmp_path):
    path, reference = make_mdlm_checkpoint(tmp_path / layout, layout=layout)
    model = load_model(f"hf:{path}")
    assert model.family == layout
    tok = model.tokenizer
    assert tok.mask_id == len(tok.hf) == reference.config.vocab_size - 1  # MASK appended after the tokens
    assert tok.pad_id == tok.eos_id and tok.encode("hi")[0] == tok.bos_id  # MDLM: [BOS] + text
    x = _ids(reference.config.vocab_size)
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[0, :3] = False
    with torch.no_grad():
        torch.testing.assert_close(model.model(x, attention_mask=mask), reference(x, attention_mask=mask), rtol=0, atol=0)
    assert model.model.config.time_conditioning is False
    out = model.generate(["Tom has 3 apples", "hi"], SamplerConfig(steps=4, gen_length=6), seeds=[0, 1])
    assert len(out.texts) == 2 and out.positions == 6 and 1 <= out.nfe <= 5


def _drop(key):
    return lambda state: state.pop(key)


def _add(key):
    return lambda state: state.__setitem__(key, torch.zeros(3))


def _reshape(key):
    return lambda state: state.__setitem__(key, torch.zeros(5, 7))


@pytest.mark.parametrize("edit, kind, key", [
    (_drop("backbone.blocks.1.norm2.weight"), "missing keys", "blocks.1.norm2.weight"),
    (_add("backbone.blocks.0.extra.weight"), "unexpected keys", "blocks.0.extra.weight"),
    (_add("ema.shadow"), "unexpected keys", "ema.shadow"),
    (_reshape("backbone.blocks.0.attn_out.weight"), "mis-shaped keys", "blocks.0.attn_out.weight (5, 7)"),
])
def test_mismatched_keys_are_one_line_errors_naming_them(edit, kind, key, tmp_path):
    path, _ = make_mdlm_checkpoint(tmp_path / "bad", edit=edit)
    with pytest.raises(ValueError) as err:
        load_model(f"hf:{path}")
    message = str(err.value)
    assert "\n" not in message and f"{kind} {key}" in message


def test_config_heads_that_do_not_fit_the_rotary_buffer_are_an_error(tmp_path):
    path, _ = make_mdlm_checkpoint(tmp_path / "heads")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "n_heads": 4}))
    with pytest.raises(ValueError, match="n_heads"):
        load_model(f"hf:{path}")


def test_pickled_weights_are_never_loaded(tmp_path, monkeypatch):
    path, _ = make_mdlm_checkpoint(tmp_path / "pickled")
    (path / "model.safetensors").rename(path / "pytorch_model.bin")

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(ValueError, match="never unpickles"):
        load_model(f"hf:{path}")


def test_family_detection_and_forcing():
    assert detect_family({"model_type": "llada", "architectures": ["LLaDAModelLM"]}) == "llada"
    assert detect_family({"model_type": "Dream", "auto_map": {"AutoModel": "modeling_dream.DreamModel"}}) == "dream"
    assert detect_family({"auto_map": {"AutoModelForMaskedLM": "modeling_mdlm.MDLM"}}) == "mdlm"
    assert detect_family({"model": {"hidden_size": 768, "n_blocks": 12}}) == "sdtt"
    assert detect_family({}, hint="jdeschena/sdtt") == "sdtt"
    assert detect_family({"model_type": "llada"}, family="dream") == "dream"
    with pytest.raises(ValueError, match=r"pass family=llada\|dream\|mdlm\|sdtt"):
        detect_family({"model_type": "bert"}, hint="x/y")
    with pytest.raises(ValueError, match="family='gpt'"):
        detect_family({}, family="gpt")


def test_forced_family_overrides_detection(tmp_path):
    path, _ = make_mdlm_checkpoint(tmp_path / "forced")
    assert load_model(f"hf:{path}", family="sdtt").family == "sdtt"


def test_sources_and_sdtt_revisions(tmp_path):
    src = parse_source("hf:jdeschena/sdtt@baselines_kld_step_70000")
    assert (src.location, src.revision, src.local) == ("jdeschena/sdtt", "baselines_kld_step_70000", False)
    assert parse_source(f"hf:{tmp_path}").local
    for bad in ("hf:", "hf:not a repo", "hf:a/b@"):
        with pytest.raises(ValueError):
            parse_source(bad)
    assert sdtt_steps("baselines_kld_step_70000") == 8 and sdtt_steps("scaling_400k_sm_step_10000") == 512
    assert sdtt_steps("teacher_1M_sm") == 16


def _hub_reachable() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.network
def test_hub_models_are_detected_without_loading_weights():
    if not _hub_reachable():
        pytest.skip("huggingface.co is not reachable (offline): the hub path cannot be exercised here")
    llada = load_model("hf:GSAI-ML/LLaDA-8B-Instruct", trust_remote_code=True, device="meta")
    assert llada.family == "llada" and llada.meta["parameters"] > 7e9
    mdlm = load_model("hf:kuleshov-group/mdlm-owt", device="meta")
    assert mdlm.family == "mdlm"
    with pytest.raises(ValueError, match="trust_remote_code=true"):
        load_model("hf:GSAI-ML/LLaDA-8B-Instruct", device="meta")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_mdlm_runs_under_bf16_autocast_like_mdlm(tmp_path):
    path, reference = make_mdlm_checkpoint(tmp_path / "cuda")
    model = load_model(f"hf:{path}", device="cuda")
    assert model.meta["dtype"] == "bfloat16" and next(model.model.parameters()).dtype == torch.float32
    x = _ids(reference.config.vocab_size)
    with torch.no_grad():
        fast = model.model(x.cuda()).cpu()
        exact = reference(x)
    assert fast.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(fast.flatten(), exact.flatten(), dim=0)
    assert cosine > 0.99
    out = model.generate(["hi", "Tom has"], SamplerConfig(steps=4, gen_length=6), seeds=[0, 1])
    assert len(out.texts) == 2
