"""Checkpoint directories: exact round trip and one-line errors for every broken case."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from sdtt_search.checkpoint import CheckpointError, Pretrained, load_pretrained, save_pretrained
from sdtt_search.model import Denoiser, ModelConfig
from sdtt_search.tokenizer import Tokenizer

ALPHABET = "0123456789+-*/=() \nabc"


def make(seed: int = 0, **overrides) -> tuple[Denoiser, Tokenizer]:
    tok = Tokenizer.char_level(ALPHABET)
    cfg = ModelConfig(vocab_size=tok.vocab_size, mask_id=tok.mask_id, hidden_size=32, n_layers=2, n_heads=4,
                      cond_dim=16, **overrides)
    torch.manual_seed(seed)
    model = Denoiser(cfg)
    with torch.no_grad():
        for p in model.parameters():  # non-zero everywhere, so the comparison means something
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval(), tok


@pytest.fixture()
def saved(tmp_path):
    model, tok = make(time_conditioning=True)
    path = save_pretrained(tmp_path / "ckpt", model, tok, meta={"kind": "diffusion", "sampling_steps": 4, "task": "countdown"},
                           card="# test model\n")
    return path, model, tok


def error_of(path, match: str) -> str:
    with pytest.raises(CheckpointError) as err:
        load_pretrained(path)
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert match in msg, msg
    assert isinstance(err.value, ValueError)
    return msg


def test_round_trip_is_exact(saved):
    path, model, tok = saved
    assert sorted(p.name for p in path.iterdir()) == ["MODEL.md", "config.json", "model.safetensors", "tokenizer.json"]
    config = json.loads((path / "config.json").read_text())
    assert config["format"] == "sdtt-search" and config["format_version"] == 1
    assert config["model"] == model.config.to_dict()
    assert config["meta"] == {"kind": "diffusion", "sampling_steps": 4, "task": "countdown"}

    loaded = load_pretrained(path)
    assert isinstance(loaded, Pretrained) and loaded.path == path
    assert not loaded.model.training
    assert loaded.model.config == model.config and loaded.meta["sampling_steps"] == 4
    a, b = model.state_dict(), loaded.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and b[k].dtype == torch.float32 for k in a)
    ids = torch.randint(0, tok.vocab_size, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, :3] = False
    sigma = torch.tensor([0.3, 2.0])
    assert torch.equal(model(ids, mask, sigma), loaded.model(ids, mask, sigma))
    assert loaded.tokenizer.encode("12+3=15\n") == tok.encode("12+3=15\n")
    assert loaded.tokenizer.mask_id == tok.mask_id
    pickle.loads(pickle.dumps(loaded.tokenizer))  # Ray ships it


def test_a_causal_denoiser_round_trips(tmp_path):
    model, tok = make(causal=True)
    path = save_pretrained(tmp_path / "ar", model, tok, meta={"kind": "ar"})
    again = load_pretrained(path).model
    ids = torch.randint(0, tok.vocab_size, (1, 5))
    assert again.config.causal and torch.equal(again(ids), model(ids))
    assert load_pretrained(path).meta == {"kind": "ar"}


def test_loaded_model_can_keep_training(saved):
    loaded = load_pretrained(saved[0]).model.train()
    assert all(p.requires_grad for p in loaded.parameters())
    ids = torch.randint(0, 10, (2, 4))
    loaded(ids, sigma=torch.rand(2)).sum().backward()


def test_foreign_special_token_names_survive(tmp_path):
    tok = Tokenizer.char_level(ALPHABET)
    tok.save(tmp_path / "tokenizer.json")
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    vocab["<m>"] = vocab.pop("[MASK]")
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    foreign = Tokenizer.from_hf(tmp_path / "tokenizer.json", mask_token="<m>", pad_token="[PAD]", eos_token="[EOS]")
    model, _ = make()
    path = save_pretrained(tmp_path / "ckpt", model, foreign)
    assert load_pretrained(path).tokenizer.mask_id == foreign.mask_id == 1


# ----------------------------------------------------------------------------- errors


def test_missing_directory_and_config(tmp_path):
    error_of(tmp_path / "absent", "does not exist")
    (tmp_path / "empty").mkdir()
    error_of(tmp_path / "empty", "config.json")


def test_foreign_configs(saved):
    path = saved[0]
    (path / "config.json").write_text(json.dumps({"architectures": ["MDLM"], "model_type": "mdlm", "vocab_size": 50258}))
    error_of(path, "looks like a Hugging Face checkpoint; use load_model('hf:")
    (path / "config.json").write_text(json.dumps({"hello": 1}))
    error_of(path, '"format": "sdtt-search"')
    (path / "config.json").write_text("{oops")
    error_of(path, "not valid JSON")


def test_bad_model_entry(saved):
    path = saved[0]
    config = json.loads((path / "config.json").read_text())
    config["model"]["n_blocks"] = 12
    (path / "config.json").write_text(json.dumps(config))
    error_of(path, "n_blocks")


def test_weights_missing_or_corrupt(saved):
    path = saved[0]
    (path / "model.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    error_of(path, "not a readable safetensors file")
    (path / "model.safetensors").unlink()
    error_of(path, "model.safetensors")


def test_shape_mismatch_names_the_tensor(saved):
    path = saved[0]
    state = load_file(str(path / "model.safetensors"))
    state["blocks.1.attn_out.weight"] = torch.zeros(32, 30)
    save_file(state, str(path / "model.safetensors"))
    msg = error_of(path, "blocks.1.attn_out.weight")
    assert "(32, 30)" in msg and "(32, 32)" in msg


def test_missing_and_unexpected_keys(saved):
    path = saved[0]
    state = load_file(str(path / "model.safetensors"))
    for i in range(2):
        for name in ("norm1.weight", "norm2.weight", "attn_qkv.weight"):
            del state[f"blocks.{i}.{name}"]
    state["backbone.extra"] = torch.zeros(3)
    save_file(state, str(path / "model.safetensors"))
    msg = error_of(path, "missing keys blocks.0.norm1.weight")
    assert "(+3 more)" in msg and "unexpected keys backbone.extra" in msg


def test_tokenizer_problems(saved, tmp_path):
    path, model, _ = saved
    other = Tokenizer.char_level(ALPHABET + "xyz")
    other.save(path / "tokenizer.json")
    error_of(path, "vocab_size")
    (path / "tokenizer.json").write_text("garbage")
    error_of(path, "tokenizer.json")
    (path / "tokenizer.json").unlink()
    error_of(path, "has no tokenizer.json")
    # mask id mismatch: same vocabulary size, MASK at another id
    swapped = Tokenizer.char_level(ALPHABET)
    swapped.save(path / "tokenizer.json")
    data = json.loads((path / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    vocab["[MASK]"], vocab["a"] = vocab["a"], vocab["[MASK]"]
    (path / "tokenizer.json").write_text(json.dumps(data))
    error_of(path, "mask id")


def test_save_refuses_mismatched_tokenizer(tmp_path):
    model, _ = make()
    with pytest.raises(CheckpointError) as err:
        save_pretrained(tmp_path / "x", model, Tokenizer.char_level("ab"))
    assert "\n" not in str(err.value) and "vocab_size" in str(err.value)
    assert not (tmp_path / "x").exists()
