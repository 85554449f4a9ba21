"""distill.ship: a checkpoint goes into the zoo with its recorded decoding and a measured card."""
from __future__ import annotations

import json

import pytest
import torch

from distill import ship
from sdtt_search.checkpoint import save_pretrained
from sdtt_search.loading import load_model
from sdtt_search.model import ModelConfig, build_denoiser
from sdtt_search.tokenizer import Tokenizer


@pytest.fixture
def checkpoint(tmp_path):
    tok = Tokenizer.char_level("0123456789+-*/=,")
    torch.manual_seed(0)
    model = build_denoiser(ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, n_layers=1, n_heads=2,
                                       backbone="llama", mask_id=tok.mask_id))
    meta = {"kind": "diffusion", "task": {"name": "countdown", "options": {"n": 3}, "path": "/somewhere/local"},
            "gen_length": 12, "sampling_steps": 8, "init_from": "countdown-cd3-ar", "semi_ar": 0.5,
            "sampler": {"method": "confidence", "block_length": 8}}
    return save_pretrained(tmp_path / "ckpt", model, tok, meta=meta)


def test_ship_records_the_decoding_and_writes_a_measured_card(tmp_path, checkpoint, monkeypatch):
    monkeypatch.setattr(ship, "ZOO_DIR", tmp_path / "zoo")
    assert ship.main([str(checkpoint), "--name", "tiny-cd3", "--samples", "2", "--limit", "3",
                      "--sampler", "block_length=1,temperature=0.5,steps=6", "--note", "A test model."]) == 0
    target = tmp_path / "zoo" / "tiny-cd3"
    sampler = load_model(str(target)).default_sampler()
    # recorded block 1; 6 steps for 12 tokens widen it to 2 (fit_blocks)
    assert (sampler.method, sampler.block_length, sampler.temperature, sampler.steps) == ("confidence", 2, 0.5, 6)
    meta = json.loads((target / "config.json").read_text())["meta"]
    assert "path" not in meta["task"]  # the training machine's data path is not shipped
    text = (target / "MODEL.md").read_text()
    assert "A test model." in text and "blocks of 2 left to right" in text and "temperature 0.5" in text
    assert "trained from countdown-cd3-ar" in text and "50% semi-autoregressive rows" in text
    metrics = json.loads((target / "metrics.json").read_text())
    assert metrics["problems"] == 3 and "pass@1" in metrics["accuracy"]


def test_ship_rejects_a_bad_sampler_override(tmp_path, checkpoint, monkeypatch):
    monkeypatch.setattr(ship, "ZOO_DIR", tmp_path / "zoo")
    with pytest.raises(ValueError, match="sampler.steps|unknown sampler option"):
        ship.main([str(checkpoint), "--name", "x", "--sampler", "stepz=3"])


def test_card_names_the_sdtt_lineage_and_the_prefix_cache():
    meta = {"kind": "diffusion", "task": {"name": "countdown", "options": {}}, "gen_length": 25,
            "sdtt": {"round": 2, "divergence": "kld", "semi_ar": 1.0, "teacher": "countdown-cd3-ar", "teacher_steps": 32,
                     "train_step": 800, "teacher_temperature": 0.5, "round_temperature": 1.0,
                     "student_init": "/runs/cd4-cpre/checkpoint"}}
    metrics = {"accuracy": {"pass@1": 0.5, "verified@2": 0.7}, "problems": 3, "throughput": {"samples_per_s": 9.0}}
    sampler = ship.SamplerConfig(method="confidence", steps=8, block_length=4)
    text = ship.card("x", meta, {"hidden_size": 32, "n_layers": 1, "n_heads": 2, "vocab_size": 20, "causal": True},
                     1000, metrics, 2, 3, "note", sampler)
    assert ("SDTT round 2 (kld, block-wise) from a 32-step teacher (countdown-cd3-ar at temperature 0.5, "
            "round-1 student from cd4-cpre)") in text
    assert "blocks of 4 left to right" in text and "exact prefix KV cache" in text
    block = ship.card("x", meta, {"hidden_size": 32, "n_layers": 1, "n_heads": 2, "vocab_size": 20, "causal": True,
                                  "attention_block": 4}, 1000, metrics, 2, 3, "note", sampler)
    assert "block-causal attention (blocks of 4" in block and "causal attention, decoded" not in block


def test_card_names_a_noise_conditioned_student_and_its_prefix_decoding():
    meta = {"kind": "diffusion", "task": {"name": "countdown", "options": {}}, "gen_length": 12,
            "sdtt": {"round": 1, "divergence": "fkl", "layout": "tail", "semi_ar": 1.0, "teacher": "countdown-cd3-ar",
                     "teacher_steps": 12, "train_step": 3000, "noise_input": True, "on_policy": True}}
    metrics = {"accuracy": {"pass@1": 0.5, "verified@2": 0.7}, "problems": 3, "throughput": {"samples_per_s": 9.0}}
    sampler = ship.SamplerConfig(method="confidence", steps=4, threshold=0.8, remasking="prefix")
    text = ship.card("x", meta, {"hidden_size": 32, "n_layers": 1, "n_heads": 2, "vocab_size": 20, "causal": True,
                                 "noise_input": True}, 1000, metrics, 2, 3, "note", sampler)
    assert "SDTT round 1 (fkl, tail, noise-conditioned, on-policy) from a 12-step teacher" in text
    assert "unbroken run of tokens drawn with probability >= 0.8" in text and "at most 4 steps" in text
    assert "sampling uniform (`model.noise_input`)" in text


def test_float16_storage_halves_the_bytes_and_loads_as_float32(tmp_path, checkpoint, monkeypatch):
    """Diffusion checkpoint: the stored file shrinks, parameters come back float32 and equal the fp16 rounding."""
    from sdtt_search.checkpoint import load_pretrained

    monkeypatch.setattr(ship, "ZOO_DIR", tmp_path / "zoo")
    assert ship.main([str(checkpoint), "--name", "half", "--samples", "1", "--limit", "2", "--store-dtype", "float16"]) == 0
    full = (checkpoint / "model.safetensors").stat().st_size
    half = (tmp_path / "zoo" / "half" / "model.safetensors").stat().st_size
    assert half < 0.6 * full
    original = load_pretrained(checkpoint).model.state_dict()
    loaded = load_pretrained(tmp_path / "zoo" / "half").model.state_dict()
    for name, tensor in loaded.items():
        assert tensor.dtype == torch.float32, name
        assert torch.equal(tensor, original[name].to(torch.float16).to(torch.float32)), name
    assert "stored in float16, loaded as float32" in (tmp_path / "zoo" / "half" / "MODEL.md").read_text()


def test_float16_storage_of_an_ar_twin_loads_as_float32_in_both_loaders(tmp_path, monkeypatch):
    from sdtt_search.ar import load_ar_pretrained
    from sdtt_search.ar.backends import TransformersBackend
    from tests.ar_fixtures import tiny_ar

    model, tok = tiny_ar(tmp_path / "ar")
    ship.store_weights_as(tmp_path / "ar", "float16")
    native = load_ar_pretrained(tmp_path / "ar").model
    hf = TransformersBackend.from_directory(tmp_path / "ar", pad_id=tok.pad_id, eos_id=tok.eos_id,
                                            device=torch.device("cpu")).model
    want = model.lm_head.weight.detach().to(torch.float16).to(torch.float32)
    assert native.lm_head.weight.dtype == torch.float32 and torch.equal(native.lm_head.weight, want)
    assert hf.lm_head.weight.dtype == torch.float32 and torch.equal(hf.lm_head.weight, want)


def test_float16_storage_refuses_weights_it_cannot_hold(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "m").mkdir()
    save_file({"w": torch.tensor([1.0, 7e4])}, str(tmp_path / "m" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="beyond float16's range"):
        ship.store_weights_as(tmp_path / "m", "float16")
    with pytest.raises(ValueError, match="--store-dtype must be one of"):
        ship.store_weights_as(tmp_path / "m", "int8")
