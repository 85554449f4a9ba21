"""SDTT with a LoRA student on shared frozen weights, on tiny models."""
from __future__ import annotations

import copy
import itertools

import pytest
import torch
from distill_fixtures import pretrain_config, sdtt_config
from test_hf_fixtures import make_remote_model

from distill import pretrain, sdtt
from distill.data import collate
from distill.lora import SharedWeightsTeacher
from distill.sdtt import sdtt_targets, student_divergence
from distill.trainer import STATE_FILE
from sdtt_search.checkpoint import load_pretrained
from sdtt_search.loading import load_model
from sdtt_search.lora import LoRASpec, attach_lora, lora_state
from tasks import load_task


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-teacher")
    return pretrain.run(pretrain_config(root, "train.steps=30", "eval.sampler.steps=8"))


def _batch(tok, gen_length, n=32):
    pairs = list(itertools.islice(load_task("countdown", n=3).train_examples(1), n))
    return collate(tok, pairs, gen_length)


def test_lora_student_starts_as_the_base_and_trains_only_adapters(teacher_dir):
    loaded = load_pretrained(teacher_dir)
    base = copy.deepcopy(loaded.model).eval()
    student = attach_lora(loaded.model, LoRASpec(r=4, alpha=8))
    batch = _batch(loaded.tokenizer, int(loaded.meta["gen_length"]), 4)
    with torch.no_grad():
        assert torch.allclose(student(batch.x, attention_mask=batch.attention_mask),
                              base(batch.x, attention_mask=batch.attention_mask), atol=1e-6)
    trainable = [n for n, p in student.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    frozen_before = {n: p.clone() for n, p in student.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):  # lora_B moves at step 1, lora_A from step 2
        opt.zero_grad()
        student.train()(batch.x, attention_mask=batch.attention_mask).square().mean().backward()
        opt.step()
    assert all(torch.equal(p, frozen_before[n]) for n, p in student.named_parameters() if not p.requires_grad)
    assert any(not torch.equal(p, frozen_before.get(n, p * 0)) for n, p in student.named_parameters() if p.requires_grad)


def test_shared_weights_teacher_is_its_snapshot_and_restores_the_student(teacher_dir):
    loaded = load_pretrained(teacher_dir)
    base = copy.deepcopy(loaded.model).eval()
    student = attach_lora(loaded.model, LoRASpec(r=4, alpha=8)).train()
    teacher = SharedWeightsTeacher(student)  # round 1: the zero-initialised adapters
    with torch.no_grad():
        for name, p in student.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn_like(p) * 0.5)
    trained = lora_state(student)
    batch = _batch(loaded.tokenizer, int(loaded.meta["gen_length"]), 4)
    args = (batch.x,)
    with torch.no_grad():
        assert torch.allclose(teacher(*args, attention_mask=batch.attention_mask),
                              base(*args, attention_mask=batch.attention_mask), atol=1e-6)
        student_out = student.eval()(*args, attention_mask=batch.attention_mask)
    assert not torch.allclose(student_out, base(*args, attention_mask=batch.attention_mask), atol=1e-3)
    assert all(torch.equal(trained[k], v) for k, v in lora_state(student).items())  # swapped back
    next_teacher = SharedWeightsTeacher(student, lora_state(student))  # a round boundary
    with torch.no_grad():
        assert torch.allclose(next_teacher(*args, attention_mask=batch.attention_mask), student_out, atol=1e-6)


def test_one_lora_update_lowers_the_divergence_to_the_two_step_target(teacher_dir):
    loaded = load_pretrained(teacher_dir)
    tok = loaded.tokenizer
    torch.manual_seed(0)
    with torch.no_grad():
        for p in loaded.model.parameters():  # a sharper random teacher
            p.add_(torch.randn_like(p) * 0.3)
    student = attach_lora(loaded.model, LoRASpec(r=8, alpha=16)).train()
    with torch.no_grad():  # start off the teacher
        for name, p in student.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.05)
    teacher = SharedWeightsTeacher(student, {k: torch.zeros_like(v) if "lora_B" in k else v
                                             for k, v in lora_state(student).items()})
    batch = _batch(tok, int(loaded.meta["gen_length"]), 64)
    out = sdtt_targets(teacher, batch, torch.Generator().manual_seed(0), dt=1 / 8, mask_id=tok.mask_id, eps=1e-5,
                       conditional=True)
    z, t, target = out.z, out.t, out.target

    def loss():
        return student_divergence(student, z, t, target, batch.attention_mask, mask_id=tok.mask_id, kind="kld",
                                  precision=64).loss

    before = float(loss().detach())
    opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(20):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss().detach()) < 0.7 * before


def test_lora_sdtt_program_writes_small_round_checkpoints_that_load(tmp_path, teacher_dir):
    out = tmp_path / "lora-sdtt"
    rows = sdtt.run(sdtt_config(out, teacher_dir, "lora.r=4", "gradient_checkpointing=true"))
    assert [r["student_steps"] for r in rows] == [4, 2]
    state = torch.load(out / STATE_FILE, weights_only=True)
    assert state["model"] and all("lora_" in k for k in state["model"])  # no copy of the frozen base
    assert all("lora_" in k for k in state["extra"]["teacher"])
    round_dir = out / "round-2-steps-2"
    assert (round_dir / "lora.json").is_file() and not (round_dir / "model.safetensors").exists()
    model = load_model(round_dir)
    sampler = model.default_sampler()
    assert sampler.steps == 2
    task = load_task("countdown", n=3)
    problems = task.problems("test", limit=2)
    out_texts = model.generate([task.format_prompt(p) for p in problems], sampler, seeds=[0, 1])
    assert len(out_texts.texts) == 2 and out_texts.nfe <= 3


def test_hf_teacher_distils_with_lora_and_needs_it(tmp_path):
    remote = make_remote_model(tmp_path / "tiny-llada", "llada")
    with pytest.raises(ValueError, match="LoRA student"):
        sdtt.run(sdtt_config(tmp_path / "full", f"hf:{remote}", "hf.trust_remote_code=true", "task.name=countdown",
                             "gen_length=16"))
    out = tmp_path / "lora"
    rows = sdtt.run(sdtt_config(out, f"hf:{remote}", "hf.trust_remote_code=true", "task.name=countdown",
                                "+task.options.n=3", "gen_length=16", "lora.r=2",
                                "lora.target_modules=[linear1,linear2]", "hf.options.chat=false"))
    assert [r["student_steps"] for r in rows] == [4, 2]
    model = load_model(out / "round-2-steps-2", trust_remote_code=True)
    assert model.default_sampler().steps == 2
    assert model.generate(["12 34 56"], model.default_sampler(), seeds=[0]).texts
