"""Every kind of model ``load_model`` returns meets the model interface (``sdtt_search.interface.Model``)."""
from __future__ import annotations

import pytest
from ar_fixtures import tiny_ar
from search_fixtures import tiny_ckpt  # noqa: F401 - pytest fixture
from test_hf_fixtures import make_mdlm_checkpoint, single_thread  # noqa: F401 - autouse fixture

from sdtt_search import load_model
from sdtt_search.interface import Completions, Model

MEMBERS = ("kind", "name", "meta", "tokenizer", "gen_length", "context_length", "default_sampler", "generate")


def _check(model, kind: str) -> None:
    assert isinstance(model, Model), [m for m in MEMBERS if not hasattr(model, m)]
    assert model.kind == kind and isinstance(model.name, str) and isinstance(model.meta, dict)
    sampler = model.default_sampler()
    out = model.generate(["1,2,3,6"], sampler.replace(gen_length=4), seeds=[0])
    assert isinstance(out, Completions) and len(out.texts) == len(out.logprobs) == 1
    assert isinstance(model.tokenizer.encode("12"), list)


def test_a_diffusion_checkpoint_is_a_model(tiny_ckpt):  # noqa: F811
    _check(load_model(tiny_ckpt), "diffusion")


def test_an_ar_twin_is_a_model(tmp_path):
    tiny_ar(tmp_path / "ar")
    _check(load_model(tmp_path / "ar", ar_backend="transformers"), "ar")


def test_a_hugging_face_model_is_a_model(tmp_path):
    path, _ = make_mdlm_checkpoint(tmp_path / "mdlm")
    _check(load_model(f"hf:{path}"), "diffusion")


def test_a_scripted_stand_in_is_not_one_without_the_members():
    class OnlyGenerate:
        def generate(self, prompts, sampler, *, seeds):
            return Completions(texts=[], logprobs=[], nfe=0, positions=0)

    assert not isinstance(OnlyGenerate(), Model)  # Search still takes it: it reads the rest with getattr


@pytest.mark.parametrize("name", ["Model", "Completions"])
def test_the_interface_is_exported_at_the_top(name):
    import sdtt_search
    from sdtt_search import interface

    assert getattr(sdtt_search, name) is getattr(interface, name)
