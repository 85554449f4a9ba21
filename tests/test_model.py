"""Denoiser: sizes, init, shapes, padding invariance, causality, time conditioning, backends."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml

from sdtt_search.model import MODEL_SIZES, Denoiser, ModelConfig, select_backend
from sdtt_search.model.attention import attention, xformers_available
from sdtt_search.model.rotary import apply_rotary, rotary_tables

V = 40
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"


def small_config(**overrides) -> ModelConfig:
    return ModelConfig(**{"vocab_size": V, "hidden_size": 32, "n_layers": 2, "n_heads": 4, "cond_dim": 16, **overrides})


def randomized(config: ModelConfig, seed: int = 0) -> Denoiser:
    """A model whose zero-initialised parts (adaLN, head) are random, so outputs depend on everything."""
    torch.manual_seed(seed)
    model = Denoiser(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adaLN_modulation" in name or "output_layer.linear" in name:
                p.normal_(0.0, 0.3)
    return model


# ----------------------------------------------------------------------------- config


def test_sizes_and_parameter_counts():
    tiny = Denoiser(ModelConfig.from_size("tiny", V))
    assert tiny.num_parameters < 2_000_000
    cfg = ModelConfig.from_size("small", 50258)
    assert (cfg.hidden_size, cfg.n_layers, cfg.n_heads, cfg.cond_dim, cfg.max_length, cfg.dropout) == (768, 12, 12, 128, 1024, 0.1)
    with torch.device("meta"):
        small = Denoiser(cfg)
        medium = Denoiser(ModelConfig.from_size("medium", 50258))
    assert abs(small.num_parameters - 169.6e6) < 0.1e6  # 
    assert abs(medium.num_parameters - 424.5e6) < 0.1e6


def test_yaml_presets_match_model_sizes():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(MODEL_SIZES)
    for name, preset in MODEL_SIZES.items():
        values = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        assert {k: values[k] for k in preset} == preset
        cfg = ModelConfig(vocab_size=V, **values)  # every key is a ModelConfig field
        assert cfg == ModelConfig.from_size(name, V)


def test_config_round_trip_and_errors():
    cfg = small_config(causal=True, mask_id=1)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    bad_cases = [
        (lambda: ModelConfig.from_dict({**cfg.to_dict(), "n_blocks": 3}), "n_blocks"),
        (lambda: small_config(hidden_size=30), "divisible"),
        (lambda: small_config(hidden_size=12, n_heads=4), "even"),
        (lambda: small_config(n_layers=0), "n_layers"),
        (lambda: small_config(attention_backend="flash"), "flash"),
        (lambda: small_config(mask_id=V), "mask_id"),
        (lambda: ModelConfig.from_size("huge", V), "tiny, mini, small, medium"),
    ]
    for make, needle in bad_cases:
        with pytest.raises(ValueError) as err:
            make()
        assert "\n" not in str(err.value) and needle in str(err.value)


# ----------------------------------------------------------------------------- structure and init


def test_state_dict_key_names_follow_mdlm():
    keys = set(Denoiser(small_config()).state_dict())
    expected = {"vocab_embed.embedding", "sigma_map.mlp.0.weight", "sigma_map.mlp.0.bias", "sigma_map.mlp.2.weight",
                "sigma_map.mlp.2.bias", "output_layer.norm_final.weight", "output_layer.linear.weight",
                "output_layer.linear.bias", "output_layer.adaLN_modulation.weight", "output_layer.adaLN_modulation.bias"}
    for i in range(2):
        expected |= {f"blocks.{i}.{n}" for n in ("norm1.weight", "attn_qkv.weight", "attn_out.weight", "norm2.weight",
                                                  "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias",
                                                  "adaLN_modulation.weight", "adaLN_modulation.bias")}
    assert keys == expected


def test_init_logits_zero_and_blocks_identity():
    model = Denoiser(small_config()).eval()
    ids = torch.randint(0, V, (2, 7))
    logits = model(ids)
    assert logits.shape == (2, 7, V) and logits.dtype == torch.float32
    assert torch.equal(logits, torch.zeros_like(logits))
    x = torch.randn(2, 7, 32)
    c = torch.randn(2, 16)
    rotary = rotary_tables(torch.arange(7).expand(2, 7), model.config.head_dim)
    for block in model.blocks:
        assert torch.equal(block(x, c, rotary, None, False, "sdpa"), x)


def test_output_shape_dtype_with_mask():
    model = randomized(small_config())
    ids = torch.randint(0, V, (3, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 1]], dtype=torch.bool)
    out = model(ids, attention_mask=mask, sigma=torch.rand(3))
    assert out.shape == (3, 5, V) and out.dtype == torch.float32 and torch.isfinite(out).all()


# ----------------------------------------------------------------------------- rotary


def test_rotary_is_a_relative_rotation():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(i: int, j: int) -> torch.Tensor:
        cq, sq = rotary_tables(torch.tensor([[i]]), 16)
        ck, sk = rotary_tables(torch.tensor([[j]]), 16)
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    assert torch.allclose(score(3, 1), score(12, 10), atol=1e-5)
    cos, sin = rotary_tables(torch.tensor([[0]]), 16)
    assert torch.equal(apply_rotary(q, cos, sin), q)  # position 0 is the identity
    half = apply_rotary(q.to(torch.bfloat16), *rotary_tables(torch.tensor([[5]]), 16))
    assert half.dtype == torch.bfloat16


# ----------------------------------------------------------------------------- padding, causality, conditioning


@pytest.mark.parametrize("causal", [False, True])
def test_left_padding_invariance(causal):
    model = randomized(small_config(causal=causal))
    torch.manual_seed(1)
    seq = torch.randint(4, V, (1, 6))
    pad = 3
    padded = torch.cat([torch.zeros(1, pad, dtype=torch.long), seq], dim=1)
    mask = torch.cat([torch.zeros(1, pad, dtype=torch.bool), torch.ones(1, 6, dtype=torch.bool)], dim=1)
    # a batch of two rows: the padded one and an unpadded neighbour of the same length
    other = torch.randint(4, V, (1, 9))
    batch_ids = torch.cat([padded, other])
    batch_mask = torch.cat([mask, torch.ones(1, 9, dtype=torch.bool)])
    sigma = torch.tensor([0.7, 0.2])
    ref = model(seq, sigma=sigma[:1])
    out = model(batch_ids, attention_mask=batch_mask, sigma=sigma)
    assert torch.isfinite(out).all()  # pad queries (causal: no real key) stay finite
    assert torch.allclose(out[0, pad:], ref[0], atol=1e-5)
    assert torch.allclose(out[1], model(other), atol=1e-5)
    # the pad tokens' ids do not matter either
    noisy = batch_ids.clone()
    noisy[0, :pad] = torch.randint(4, V, (pad,))
    assert torch.allclose(model(noisy, attention_mask=batch_mask)[0, pad:], ref[0], atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_causality(causal):
    model = randomized(small_config(causal=causal))
    torch.manual_seed(2)
    ids = torch.randint(0, V, (2, 8))
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] + 1 + torch.randint(0, V - 1, (2, 3))) % V
    a, b = model(ids), model(changed)
    prefix_same = torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert prefix_same == causal
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("time_conditioning", [False, True])
def test_time_conditioning(time_conditioning):
    model = randomized(small_config(time_conditioning=time_conditioning))
    ids = torch.randint(0, V, (2, 6))
    a = model(ids, sigma=torch.tensor([0.1, 0.1]))
    b = model(ids, sigma=torch.tensor([3.0, 3.0]))
    assert torch.allclose(a, b) != time_conditioning
    if time_conditioning:
        with pytest.raises(ValueError) as err:
            model(ids)
        assert "\n" not in str(err.value) and "sigma" in str(err.value)
    else:
        assert torch.equal(model(ids), a)  # sigma is ignored (zeroed)


def test_dropout_only_in_train_mode():
    model = randomized(small_config(dropout=0.5))
    ids = torch.randint(0, V, (2, 6))
    assert torch.equal(model(ids), model(ids))
    model.train()
    assert not torch.equal(model(ids), model(ids))


def test_backward_reaches_all_parameters():
    model = randomized(small_config(time_conditioning=True)).train()
    ids = torch.randint(0, V, (2, 6))
    mask = torch.tensor([[0, 1, 1, 1, 1, 1], [1] * 6], dtype=torch.bool)
    model(ids, attention_mask=mask, sigma=torch.rand(2)).logsumexp(-1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# ----------------------------------------------------------------------------- attention backends


def test_select_backend_on_cpu(caplog):
    with caplog.at_level(logging.INFO, logger="sdtt_search.model"):
        assert select_backend("auto", torch.device("cpu")) == "sdpa"
        assert select_backend("sdpa", "cpu") == "sdpa"
    with pytest.raises(RuntimeError) as err:
        select_backend("xformers", torch.device("cpu"))
    msg = str(err.value)
    assert "\n" not in msg and "pip install 'sdtt-search[gpu]'" in msg and "CUDA" in msg
    with pytest.raises(ValueError):
        select_backend("flash", "cpu")


def _reference_attention(q, k, v, key_padding_mask, causal):
    """Plain softmax attention with the same masking rule (pads attend to themselves)."""
    B, L, H, D = q.shape
    scores = torch.einsum("bihd,bjhd->bhij", q.float(), k.float()) / D**0.5
    allowed = torch.ones(L, L, dtype=torch.bool)
    if causal:
        allowed = allowed.tril()
    allowed = allowed.expand(B, 1, L, L)
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :]
    allowed = allowed | torch.eye(L, dtype=torch.bool)
    probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    return torch.einsum("bhij,bjhd->bihd", probs, v.float())


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_sdpa_matches_reference(causal, padded):
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 9, 3, 8) for _ in range(3))
    kpm = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1], [1] * 9], dtype=torch.bool) if padded else None
    out = attention(q, k, v, key_padding_mask=kpm, causal=causal, backend="sdpa")
    assert out.shape == q.shape and torch.isfinite(out).all()
    assert torch.allclose(out, _reference_attention(q, k, v, kpm, causal), atol=1e-5)


gpu = pytest.mark.skipif(not torch.cuda.is_available() or not xformers_available(), reason="needs a CUDA GPU and xformers")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_xformers_matches_sdpa(dtype, causal, padded):
    torch.manual_seed(4)
    B, L, H, D = 3, 37, 4, 64  # L not a multiple of 8: exercises the aligned bias
    q, k, v = (torch.randn(B, L, H, D, device="cuda", dtype=dtype) for _ in range(3))
    kpm = None
    if padded:
        kpm = torch.ones(B, L, dtype=torch.bool, device="cuda")
        kpm[0, :5] = False
        kpm[1, :20] = False
    a = attention(q, k, v, key_padding_mask=kpm, causal=causal, backend="xformers")
    b = attention(q, k, v, key_padding_mask=kpm, causal=causal, backend="sdpa")
    assert a.dtype == dtype and torch.isfinite(a).all()
    assert torch.allclose(a.float(), b.float(), atol=2e-2, rtol=2e-2)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("padded", [False, True])
def test_xformers_matches_sdpa_with_block_causal_attention(padded):
    from sdtt_search.model.attention import block_causal_mask

    torch.manual_seed(5)
    B, L, H, D = 2, 37, 4, 64
    q, k, v = (torch.randn(B, L, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    kpm = None
    if padded:
        kpm = torch.ones(B, L, dtype=torch.bool, device="cuda")
        kpm[0, :5] = False
    allowed = block_causal_mask(L, 12, 4, device="cuda")
    a = attention(q, k, v, key_padding_mask=kpm, causal=True, backend="xformers", allowed=allowed)
    b = attention(q, k, v, key_padding_mask=kpm, causal=True, backend="sdpa", allowed=allowed)
    assert torch.isfinite(a).all() and torch.allclose(a.float(), b.float(), atol=2e-2, rtol=2e-2)


@pytest.mark.gpu
@gpu
def test_model_xformers_vs_sdpa_under_autocast():
    cfg = small_config(hidden_size=128, n_heads=2, causal=False)
    model = randomized(cfg).cuda()
    ids = torch.randint(0, V, (2, 21), device="cuda")
    mask = torch.ones(2, 21, dtype=torch.bool, device="cuda")
    mask[0, :6] = False
    outs = []
    for backend in ("xformers", "sdpa"):
        model.config.attention_backend = backend
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outs.append(model(ids, attention_mask=mask))
    assert outs[0].dtype == torch.float32
    assert torch.allclose(outs[0], outs[1], atol=5e-2, rtol=5e-2)


def test_cpu_autocast_bf16_gives_fp32_logits():
    model = randomized(small_config(causal=True, time_conditioning=True))
    ids = torch.randint(0, V, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, :4] = False
    sigma = torch.rand(2)
    ref = model(ids, mask, sigma)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, mask, sigma)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()  # bf16-level agreement


def test_meta_device_forward_for_shape_checks():
    with torch.device("meta"):
        model = Denoiser(small_config())
        out = model(torch.zeros(2, 3, dtype=torch.long))
    assert out.shape == (2, 3, V) and out.device.type == "meta"


def test_an_xformers_whose_kernel_fails_is_reported_unusable_with_a_warning(caplog):
    """A wheel built for another torch imports but its kernel raises: auto must fall back."""
    from types import SimpleNamespace

    from sdtt_search.model.attention import _kernel_runs

    def broken(q, k, v):
        raise NotImplementedError("No operator found for `memory_efficient_attention_forward`\n details")

    with caplog.at_level("WARNING", logger="sdtt_search.model"):
        assert not _kernel_runs(SimpleNamespace(memory_efficient_attention=broken), "cpu")
    assert "No operator found" in caplog.text and "SDPA" in caplog.text
    assert _kernel_runs(SimpleNamespace(memory_efficient_attention=lambda q, k, v: q), "cpu")
