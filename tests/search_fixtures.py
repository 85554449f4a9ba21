"""Shared fixtures of the search tests: a tiny random countdown checkpoint.

Import the fixtures into a test module with ``from search_fixtures import tiny_ckpt``
(pytest then finds them by name). The checkpoint is built once per session.
"""
from __future__ import annotations

import pytest

GEN_LENGTH = 12
STEPS = 4


def build_tiny_checkpoint(directory, *, seed: int = 0):
    """A 1-layer char-level denoiser with random weights (std 0.1: varied, mostly non-degenerate samples)."""
    import torch

    from sdtt_search.checkpoint import save_pretrained
    from sdtt_search.model import Denoiser, ModelConfig
    from sdtt_search.tokenizer import Tokenizer

    tok = Tokenizer.char_level("0123456789+-*/=,")
    config = ModelConfig.from_size("tiny", vocab_size=tok.vocab_size, mask_id=tok.mask_id, max_length=64,
                                   hidden_size=32, n_layers=1, n_heads=2, cond_dim=16)
    torch.manual_seed(seed)
    model = Denoiser(config)
    with torch.no_grad():
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.1)
    meta = {"kind": "diffusion", "gen_length": GEN_LENGTH, "sampling_steps": STEPS,
            "task": {"name": "countdown", "options": {"n": 3}}}
    return save_pretrained(directory, model, tok, meta=meta)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """Path (str) of the tiny checkpoint directory."""
    return str(build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt")))


@pytest.fixture(scope="session")
def tiny_model(tiny_ckpt):
    from sdtt_search.loading import load_model

    return load_model(tiny_ckpt)


@pytest.fixture(scope="session")
def countdown3():
    from tasks import load_task

    return load_task("countdown", n=3)
