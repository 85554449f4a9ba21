"""``SamplerConfig``: its home module, the diffusion re-export, ``replace`` and ``from_dict``."""
from __future__ import annotations

import dataclasses

import pytest

from sdtt_search.sampling_config import SamplerConfig, fit_blocks


def test_the_diffusion_package_re_exports_the_same_class():
    from sdtt_search import SamplerConfig as top_level
    from sdtt_search.diffusion import SamplerConfig as from_diffusion

    assert from_diffusion is SamplerConfig and top_level is SamplerConfig


def test_replace_changes_the_given_fields_and_keeps_the_rest():
    base = SamplerConfig(method="confidence", steps=8, gen_length=32, block_length=4, threshold=0.9, temperature=0.7)
    changed = base.replace(temperature=1.0, stratify=3)
    assert changed == dataclasses.replace(base, temperature=1.0, stratify=3)
    assert (changed.temperature, changed.stratify, changed.block_length, changed.threshold) == (1.0, 3, 4, 0.9)
    assert base.temperature == 0.7 and base.stratify == 0  # the original is untouched
    assert base.replace() == base and base.replace() is not base


def test_replace_checks_the_result_with_one_line_errors():
    base = SamplerConfig(method="confidence", steps=8)
    with pytest.raises(ValueError, match=r"^sampler.steps=0 must be a positive integer$"):
        base.replace(steps=0)
    with pytest.raises(ValueError, match=r"^unknown sampler option\(s\) stepz; known: "):
        base.replace(stepz=4)
    with pytest.raises(ValueError, match="sampler.kv_cache=dual applies to method=confidence"):
        base.replace(method="ancestral", kv_cache="dual")  # a valid field, an invalid combination


def test_from_dict_round_trips_and_names_unknown_keys():
    config = SamplerConfig(method="confidence", steps=4, kv_cache="dual", kv_refresh=2, stratify=2)
    assert SamplerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown sampler option\(s\) a, b; known: block_length, cache, "):
        SamplerConfig.from_dict({"steps": 4, "b": 1, "a": 2})


def test_fit_blocks_widens_through_replace():
    sampler = SamplerConfig(method="confidence", steps=4, block_length=1, gen_length=25)
    assert fit_blocks(sampler, 25) == sampler.replace(block_length=7)
    assert fit_blocks(sampler.replace(steps=25), 25).block_length == 1


def test_with_overrides_is_the_one_rule_of_a_models_decoding():
    from sdtt_search.sampling_config import with_overrides

    recorded = SamplerConfig(method="confidence", steps=25, block_length=1, gen_length=25, threshold=0.9)
    assert with_overrides(recorded) == recorded
    assert with_overrides(recorded, {"temperature": None, "threshold": None}) == recorded  # null keeps the recorded
    widened = with_overrides(recorded, {"steps": 4})
    assert (widened.steps, widened.block_length, widened.threshold) == (4, 7, 0.9)  # ceil(25 / 4), one step each
    assert with_overrides(recorded, {"steps": 4, "block_length": 5}).block_length == 5  # asked for: kept
    fields = {"method": "confidence", "steps": 2, "block_length": 1}  # fields, no gen_length of their own
    assert with_overrides(fields, gen_length=8).block_length == 4 and with_overrides(fields).block_length == 1
    assert with_overrides(recorded.replace(gen_length=None), {"steps": 5}, gen_length=10).block_length == 2
    with pytest.raises(ValueError, match=r"^sampler.steps=0 must be a positive integer$"):
        with_overrides(recorded, {"steps": 0})


def test_a_checkpoints_default_sampler_follows_the_rule():
    from types import SimpleNamespace

    from sdtt_search.diffusion_model import DiffusionModel

    network = SimpleNamespace(eval=lambda: network)
    meta = {"gen_length": 12, "sampling_steps": 3, "sampler": {"method": "confidence", "block_length": 2, "steps": 9}}
    sampler = DiffusionModel(network, None, meta, name="m").default_sampler()
    assert (sampler.method, sampler.steps, sampler.gen_length, sampler.block_length) == ("confidence", 3, 12, 4)
    plain = DiffusionModel(network, None, {"gen_length": 12}, name="m").default_sampler()
    assert (plain.method, plain.steps, plain.block_length) == ("ancestral", 32, None)
