"""distill.sdtt: the update lowers the divergence, rounds halve the steps and swap
the teacher, each round exports a checkpoint, and a killed run resumes exactly."""
from __future__ import annotations

import copy
import itertools
import json

import pytest
import torch
from distill_fixtures import pretrain_config, sdtt_config

from distill import pretrain, sdtt
from distill.data import collate
from distill.sdtt import sdtt_targets, student_divergence
from distill.trainer import STATE_FILE, Trainer
from sdtt_search.checkpoint import load_pretrained


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    return pretrain.run(pretrain_config(root, "train.steps=30", "eval.sampler.steps=8"))


@pytest.mark.parametrize("kind", ["kld", "mse", "tvd"])
def test_one_sdtt_update_lowers_the_divergence_to_the_two_step_target(teacher_dir, kind):
    """A gradient step on the student moves its one-step prediction towards the
    teacher's two-step target on the same z_t (fails with a wrong sign, wrong
    positions or targets that do not reach the loss)."""
    loaded = load_pretrained(teacher_dir)
    teacher, tok = loaded.model.eval(), loaded.tokenizer
    torch.manual_seed(0)
    for p in teacher.parameters():  # a sharper, random teacher: targets far from uniform
        p.data.add_(torch.randn_like(p) * 0.3)
    student = copy.deepcopy(teacher).train()
    for p in student.parameters():  # off the teacher, so TVD is not at its kink |0|
        p.data.add_(torch.randn_like(p) * 0.05)
    from tasks import load_task

    pairs = list(itertools.islice(load_task("countdown", n=3).train_examples(1), 64))
    batch = collate(tok, pairs, int(loaded.meta["gen_length"]))
    z, t, target, _ = sdtt_targets(teacher, batch, torch.Generator().manual_seed(0), dt=1 / 8, mask_id=tok.mask_id,
                                eps=1e-5, conditional=True)
    assert not (z[~batch.maskable] == tok.mask_id).any()  # the prompt is never masked

    def loss():
        return student_divergence(student, z, t, target, batch.attention_mask, mask_id=tok.mask_id, kind=kind, precision=64).loss

    before = float(loss().detach())
    assert before > 0  # one student step is not already two teacher steps
    def descend(scale: float) -> float:
        """One gradient step of size scale * loss / |grad|^2 (a Polyak step)."""
        value = loss()
        student.zero_grad()
        value.backward()
        grads = [p.grad for p in student.parameters() if p.grad is not None]
        norm2 = float(sum((g**2).sum() for g in grads))
        with torch.no_grad():
            for p in student.parameters():
                if p.grad is not None:
                    p -= scale * float(value) / norm2 * p.grad
        return float(loss().detach())

    after_one = descend(0.01)
    assert after_one < before, (before, after_one)
    for _ in range(30):
        descend(0.3)
    assert float(loss().detach()) < 0.5 * before


def test_rounds_halve_steps_swap_teacher_and_export(tmp_path, teacher_dir, monkeypatch):
    snapshots = {}
    original_save = Trainer.save

    def save_and_snapshot(self):
        original_save(self)
        snapshots[self.step] = {k: v.clone() for k, v in self.module.state_dict().items()}

    monkeypatch.setattr(Trainer, "save", save_and_snapshot)
    rows = sdtt.run(sdtt_config(tmp_path, teacher_dir))
    assert [r["student_steps"] for r in rows] == [4, 2]
    assert [r["round"] for r in rows] == [1, 2]
    for r in rows:
        assert r["teacher_steps"] == 8 and 0 <= r["student_pass@1"] <= 1 and r["samples_per_s"] > 0
    for steps, r in ((4, 1), (2, 2)):
        ckpt = load_pretrained(tmp_path / f"round-{r}-steps-{steps}")
        assert ckpt.meta["sampling_steps"] == steps and ckpt.meta["sdtt"]["round"] == r
    table = json.loads((tmp_path / "rounds.json").read_text())
    assert set(table["rounds"]) == {"1", "2"} and table["teacher"]["steps"] == 8
    # Round 2's teacher is the student's raw weights at the end of round 1 (step 3).
    final = torch.load(tmp_path / STATE_FILE, weights_only=True)
    for name, tensor in final["extra"]["teacher"].items():
        assert torch.equal(tensor, snapshots[3][name]), name
    assert final["step"] == 6


def test_killed_distillation_resumes_to_the_same_state(tmp_path, teacher_dir, monkeypatch):
    sdtt.run(sdtt_config(tmp_path / "straight", teacher_dir))
    original = Trainer.train_step

    def dying(self):
        if self.step == 5:  # in round 2, after the round-1 boundary and the save at step 3
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        sdtt.run(sdtt_config(tmp_path / "killed", teacher_dir))
    monkeypatch.setattr(Trainer, "train_step", original)
    sdtt.run(sdtt_config(tmp_path / "killed", teacher_dir))
    a = torch.load(tmp_path / "straight" / STATE_FILE, weights_only=True)
    b = torch.load(tmp_path / "killed" / STATE_FILE, weights_only=True)
    for key in ("model", ):
        for name, tensor in a[key].items():
            assert torch.allclose(tensor, b[key][name], atol=1e-6), name
    for name, tensor in a["extra"]["teacher"].items():
        assert torch.allclose(tensor, b["extra"]["teacher"][name], atol=1e-6), name


def test_unconditional_mode_and_bad_options(tmp_path, teacher_dir):
    rows = sdtt.run(sdtt_config(tmp_path, teacher_dir, "conditional=false", "min_steps=4", "divergence=tvd"))
    assert [r["student_steps"] for r in rows] == [4]
    for bad, needle in (("divergence=js", "divergence"), ("min_steps=3", "power of 2"), ("loss_precision=16", "loss_precision")):
        with pytest.raises(ValueError, match=needle):
            sdtt.run(sdtt_config(tmp_path / "bad", teacher_dir, bad))


def test_teacher_temperature_is_recorded_and_scored(tmp_path, teacher_dir):
    rows = sdtt.run(sdtt_config(tmp_path, teacher_dir, "min_steps=4", "teacher_temperature=0.5", "round_temperature=0.8"))
    assert rows[0]["teacher_temperature"] == 0.5 and rows[0]["student_temperature"] == 1.0
    meta = load_pretrained(tmp_path / "round-1-steps-4").meta["sdtt"]
    assert meta["teacher_temperature"] == 0.5 and meta["round_temperature"] == 0.8
    with pytest.raises(ValueError, match="round_temperature"):
        sdtt.run(sdtt_config(tmp_path / "bad", teacher_dir, "round_temperature=0"))


def test_block_sdtt_targets_are_the_teachers_two_half_block_steps():
    """semi_ar=1, block 4: each row is a clean prefix, one masked block at a multiple of
    4, masked future; the teacher reveals the block's left half, then its right half
    given the left; the student is scored on the block only, against those steps."""
    from fakes import ContextModel

    from tasks import load_task
    from sdtt_search.diffusion import subs_log_probs
    from sdtt_search.tokenizer import Tokenizer

    tok = Tokenizer.char_level("0123456789+-*/=,")
    pairs = list(itertools.islice(load_task("countdown", n=3).train_examples(2), 48))
    batch = collate(tok, pairs, 22)
    teacher = ContextModel(tok.vocab_size, tok.mask_id, seed=3)
    z, t, target, scored = sdtt_targets(teacher, batch, torch.Generator().manual_seed(0), dt=0.01, mask_id=tok.mask_id,
                                        eps=1e-5, conditional=True, semi_ar=1.0, block=4)
    assert len(teacher.calls) == 2
    step1, step2 = teacher.calls[0]["x"], teacher.calls[1]["x"]
    starts = set()
    for r in range(z.shape[0]):
        cols = torch.nonzero(batch.maskable[r]).flatten()
        m = z[r, cols] == tok.mask_id
        k = int(torch.nonzero(m).min())
        starts.add(k)
        assert k % 4 == 0 and bool(m[k:].all()) and torch.equal(z[r, cols][:k], batch.x[r, cols][:k])
        block = torch.zeros(len(cols), dtype=torch.bool)
        block[k:k + 4] = True
        assert torch.equal(scored[r, cols], block)
        revealed = step2[r, cols] != tok.mask_id
        assert torch.equal(revealed[k:], torch.arange(len(cols))[k:] < min(k + 2, len(cols)))  # left half only
    assert len(starts) > 2
    lp1 = subs_log_probs(teacher(step1, attention_mask=batch.attention_mask), step1, tok.mask_id)
    lp2 = subs_log_probs(teacher(step2, attention_mask=batch.attention_mask), step2, tok.mask_id)
    left = scored & (step2 != tok.mask_id)
    right = scored & (step2 == tok.mask_id)
    assert left.any() and right.any()
    assert torch.allclose(target[left], lp1[left].float()) and torch.allclose(target[right], lp2[right].float())


def test_block_sdtt_needs_a_block_length():
    from tasks import load_task
    from sdtt_search.tokenizer import Tokenizer

    tok = Tokenizer.char_level("0123456789+-*/=,")
    batch = collate(tok, list(itertools.islice(load_task("countdown", n=3).train_examples(3), 4)), 22)
    with pytest.raises(ValueError, match="block length"):
        sdtt_targets(lambda x, **_: None, batch, None, dt=0.1, mask_id=tok.mask_id, eps=1e-5, conditional=True,
                     semi_ar=0.5, block=None)
