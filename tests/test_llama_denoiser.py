"""The Llama-backbone denoiser: an AR twin's weights become a masked diffusion model
(bidirectional attention, shifted logits: DiffuLLaMA / Dream adaptation)."""
from __future__ import annotations

import json

import pytest
import torch
from distill_fixtures import pretrain_config, sdtt_config

from distill import pretrain, sdtt
from distill.pretrain import load_initial_weights
from sdtt_search.checkpoint import load_pretrained, save_pretrained
from sdtt_search.loading import load_model
from sdtt_search.model import Denoiser, LlamaDenoiser, ModelConfig, build_denoiser
from sdtt_search.model.llama import CausalLM
from sdtt_search.model.llama_denoiser import llama_shape
from sdtt_search.tokenizer import Tokenizer

V = 21


def _config(**kw) -> ModelConfig:
    return ModelConfig(vocab_size=V, hidden_size=64, n_layers=2, n_heads=2, mlp_ratio=2, backbone="llama", mask_id=1, **kw)


def _pair(causal: bool):
    torch.manual_seed(0)
    cfg = _config(causal=causal)
    ar, denoiser = CausalLM(llama_shape(cfg)).eval(), build_denoiser(cfg).eval()
    load_initial_weights(denoiser, ar, "ar")
    return ar, denoiser


def test_shift_reads_position_i_from_the_ar_prediction_at_i_minus_1():
    ar, denoiser = _pair(causal=True)
    x = torch.randint(0, V, (3, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[0, :4] = False  # left padding
    with torch.no_grad():
        a, d = ar(x, mask), denoiser(x, mask)
    # the AR head's next-token logits, one place to the right ...
    assert torch.equal(d[1:, 1:], a[1:, :-1]) and torch.equal(d[0, 5:], a[0, 4:-1])
    # ... except at a row's first real token, which has no left neighbour
    assert torch.equal(d[1:, 0], a[1:, 0]) and torch.equal(d[0, 4], a[0, 4])


def test_attention_is_bidirectional_and_left_padding_leaves_a_row_unchanged():
    _, denoiser = _pair(causal=False)
    x = torch.randint(2, V, (1, 9), generator=torch.Generator().manual_seed(2))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1 - 2) % (V - 2) + 2
    with torch.no_grad():
        assert not torch.allclose(denoiser(x)[0, 1], denoiser(y)[0, 1])  # a later token changes an earlier logit
        padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), x], dim=1)
        mask = torch.cat([torch.zeros(1, 3, dtype=torch.bool), torch.ones(1, 9, dtype=torch.bool)], dim=1)
        assert torch.allclose(denoiser(padded, mask)[0, 3:], denoiser(x)[0], atol=1e-5)


def test_checkpoint_round_trip_rebuilds_the_llama_backbone(tmp_path):
    _, denoiser = _pair(causal=False)
    tok = Tokenizer.char_level("0123456789+-*/=, ")
    cfg = ModelConfig.from_dict({**denoiser.config.to_dict(), "vocab_size": tok.vocab_size, "mask_id": tok.mask_id})
    model = build_denoiser(cfg).eval()
    save_pretrained(tmp_path, model, tok, meta={"gen_length": 5, "sampling_steps": 4,
                                                "sampler": {"method": "confidence", "temperature": 0.5}})
    loaded = load_pretrained(tmp_path)
    assert isinstance(loaded.model, LlamaDenoiser) and loaded.model.config == cfg
    x = torch.tensor([tok.encode("12+3=")])
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    sampler = load_model(str(tmp_path)).default_sampler()  # the checkpoint's recorded decoding, its own steps
    assert (sampler.method, sampler.steps, sampler.temperature, sampler.gen_length) == ("confidence", 4, 0.5, 5)


def test_bad_backbones_and_mismatched_initial_weights_are_one_line_errors():
    with pytest.raises(ValueError, match="model.backbone='gpt' is unknown"):
        ModelConfig(vocab_size=V, backbone="gpt")
    with pytest.raises(ValueError, match="time_conditioning=false"):
        _config(time_conditioning=True)
    ar = CausalLM(llama_shape(_config()))
    dit = Denoiser(ModelConfig(vocab_size=V, hidden_size=64, n_layers=2, n_heads=2, mask_id=1))
    with pytest.raises(ValueError, match="model.backbone=llama") as err:
        load_initial_weights(dit, ar, "twin")
    assert "\n" not in str(err.value)
    wider = build_denoiser(ModelConfig(vocab_size=V, hidden_size=128, n_layers=2, n_heads=2, backbone="llama", mask_id=1))
    with pytest.raises(ValueError, match="same model size"):
        load_initial_weights(wider, ar, "twin")


def test_pretrain_adapts_an_ar_twin_and_sdtt_distils_the_result(tmp_path):
    ar_dir = pretrain.run(pretrain_config(tmp_path / "ar", "objective=ar", "model.n_heads=1"))
    export = pretrain.run(pretrain_config(tmp_path / "adapt", "model.backbone=llama", "model.n_heads=1",
                                          f"init_from={ar_dir}", "eval.sampler.method=confidence", "semi_ar=0.5"))
    loaded = load_pretrained(export)
    assert isinstance(loaded.model, LlamaDenoiser) and loaded.meta["kind"] == "diffusion"
    assert loaded.meta["init_from"] == str(ar_dir) and loaded.meta["sampler"]["method"] == "confidence"
    assert loaded.meta["semi_ar"] == 0.5
    first = json.loads((tmp_path / "adapt" / "log.jsonl").read_text().splitlines()[0])
    assert first["step"] == 1 and first["loss"] > 0
    # block-wise SDTT: the students decode blocks of 2 (teacher), then widened to one step per block
    rows = sdtt.run(sdtt_config(tmp_path / "sdtt", export, "semi_ar=0.5", "eval.block_length=2"))
    assert [r["student_steps"] for r in rows] == [4, 2]
    student = load_pretrained(tmp_path / "sdtt" / "round-2-steps-2")
    assert isinstance(student.model, LlamaDenoiser) and student.meta["sampler"]["method"] == "confidence"
    gen = loaded.meta["gen_length"]
    sampler = load_model(str(tmp_path / "sdtt" / "round-2-steps-2")).default_sampler()
    assert (sampler.steps, sampler.block_length) == (2, -(-gen // 2))


def test_an_ar_twin_is_a_causal_denoiser_teacher_and_sdtt_distils_it(tmp_path):
    """The AR twin as a causal denoiser decodes greedily exactly as the AR model does
    (blocks of one token); SDTT starts from it and its causal students load and
    decode with the prefix cache."""
    from sdtt_search.diffusion import SamplerConfig
    from sdtt_search.loading import load_ar_as_denoiser

    from sdtt_search.ar import load_ar_pretrained, save_ar_pretrained

    trained = pretrain.run(pretrain_config(tmp_path / "ar", "objective=ar", "model.n_heads=1"))
    # random weights with a sharp head: greedy outputs that depend on the prompt
    twin = load_ar_pretrained(trained)
    torch.manual_seed(0)
    model = CausalLM(twin.model.config)
    with torch.no_grad():
        model.lm_head.weight.mul_(50)
    ar_dir = save_ar_pretrained(tmp_path / "random-ar", model, twin.tokenizer, meta=twin.meta)
    teacher = load_ar_as_denoiser(ar_dir)
    assert teacher.model.config.causal and teacher.default_sampler().block_length == 1
    ar = load_model(str(ar_dir), ar_backend="transformers")
    from distill.setup import build_task, eval_problems

    task = build_task(twin.meta["task"])
    prompts = [task.format_prompt(p) for p in eval_problems(task, "validation", 3)]
    greedy = SamplerConfig(method="confidence", steps=teacher.gen_length, block_length=1, temperature=0.0)
    ar_texts = ar.generate(prompts, SamplerConfig(method="autoregressive", temperature=0.0), seeds=[0, 1, 2]).texts
    assert teacher.generate(prompts, greedy, seeds=[0, 1, 2]).texts == ar_texts
    assert len(set(ar_texts)) == 3
    with pytest.raises(ValueError, match="not an AR checkpoint"):
        load_ar_as_denoiser(tmp_path)

    bidirectional = pretrain.run(pretrain_config(tmp_path / "adapt", "model.backbone=llama", "model.n_heads=1",
                                                 f"init_from={trained}", "semi_ar=1.0", "train.steps=4"))
    sudoku = pretrain.run(pretrain_config(tmp_path / "sudoku", "task=sudoku", "train.steps=1"))
    for other, needle in ((ar_dir, "is an AR checkpoint"), (sudoku, "another tokenizer")):
        with pytest.raises(ValueError, match=needle):
            sdtt.run(sdtt_config(tmp_path / "bad", trained, "semi_ar=1.0", "eval.block_length=1", "teacher_steps=32",
                                 "min_steps=8", f"student_init={other}"))
    # an AR teacher commits one token a step: fewer steps than tokens is a one-line error
    with pytest.raises(ValueError, match=r"teacher_steps \(4\) must be at least gen_length \(\d+\); pass teacher_steps="):
        sdtt.run(sdtt_config(tmp_path / "short", trained, "semi_ar=1.0", "eval.block_length=1", "teacher_steps=4",
                             "min_steps=2"))
    rows = sdtt.run(sdtt_config(tmp_path / "sdtt", trained, "semi_ar=1.0", "eval.block_length=1", "teacher_steps=32",
                                "min_steps=8", "eval.method=confidence"))
    assert [r["student_steps"] for r in rows] == [16, 8]
    student = load_model(str(tmp_path / "sdtt" / "round-2-steps-8"))
    assert student.model.config.causal and student.meta["sdtt"]["teacher"] == str(trained)
    sampler = student.default_sampler()
    assert sampler.steps == 8 and sampler.block_length == -(-student.gen_length // 8)
    out = student.generate(prompts, sampler, seeds=[0, 1, 2])
    assert len(out.texts) == 3
    # a bidirectional student from a block-wise denoiser, taught by the causal AR teacher
    sdtt.run(sdtt_config(tmp_path / "mixed", trained, "semi_ar=1.0", "eval.block_length=1", "teacher_steps=32",
                         "min_steps=16", f"student_init={bidirectional}"))
    mixed = load_pretrained(tmp_path / "mixed" / "round-1-steps-16")
    assert not mixed.model.config.causal and mixed.meta["sdtt"]["student_init"] == str(bidirectional)


def test_pretrain_trains_a_causal_denoiser_that_decodes_with_the_prefix_cache(tmp_path):
    ar_dir = pretrain.run(pretrain_config(tmp_path / "ar", "objective=ar", "model.n_heads=1"))
    export = pretrain.run(pretrain_config(tmp_path / "causal", "model.backbone=llama", "model.causal=true",
                                          "model.n_heads=1", f"init_from={ar_dir}", "semi_ar=1.0",
                                          "eval.sampler.method=confidence", "+eval.sampler.block_length=2"))
    model = load_model(str(export))
    assert model.model.config.causal and model.model.supports_prefix_cache
    # evaluated (and recorded) at the fixture's 4 steps: blocks widened to one step each
    assert model.default_sampler().block_length == -(-model.gen_length // 4)
    with pytest.raises(ValueError, match="backbone=llama"):
        pretrain.run(pretrain_config(tmp_path / "bad", "model.causal=true"))
