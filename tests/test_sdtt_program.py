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
from distill.sdtt import causal_tail_targets, sdtt_targets, student_divergence
from distill.trainer import STATE_FILE, Trainer
from sdtt_search.checkpoint import load_pretrained


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    return pretrain.run(pretrain_config(root, "train.steps=30", "eval.sampler.steps=8"))


@pytest.mark.parametrize("kind", ["kld", "fkl", "mse", "tvd"])
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
    out = sdtt_targets(teacher, batch, torch.Generator().manual_seed(0), dt=1 / 8, mask_id=tok.mask_id, eps=1e-5,
                       conditional=True)
    z, t, target = out.z, out.t, out.target
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


def test_each_round_fits_its_own_teacher_at_its_step_size_and_temperature(tmp_path, teacher_dir, monkeypatch):
    """Round 1 (optimiser steps 0-2) distils the original teacher's 8-step sampler at
    teacher_temperature, round 2 (steps 3-5) the round-1 student's 4-step sampler at
    round_temperature: dt = (1 - eps) / the round's teacher steps, one teacher per round."""
    calls = []
    loss = sdtt.sdtt_loss

    def spy(student, teacher, batch, generator, **options):
        calls.append((teacher, options["dt"], options["temperature"]))
        return loss(student, teacher, batch, generator, **options)

    monkeypatch.setattr(sdtt, "sdtt_loss", spy)
    sdtt.run(sdtt_config(tmp_path, teacher_dir, "teacher_temperature=0.5", "round_temperature=0.8", "eps=1e-5"))
    assert [dt for _, dt, _ in calls] == pytest.approx([(1 - 1e-5) / 8] * 3 + [(1 - 1e-5) / 4] * 3, rel=1e-12)
    assert [temperature for _, _, temperature in calls] == [0.5] * 3 + [0.8] * 3
    teachers = [id(teacher) for teacher, _, _ in calls]
    assert len(set(teachers[:3])) == 1 and len(set(teachers[3:])) == 1 and teachers[0] != teachers[3]


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
    out = sdtt_targets(teacher, batch, torch.Generator().manual_seed(0), dt=0.01, mask_id=tok.mask_id, eps=1e-5,
                       conditional=True, semi_ar=1.0, block=4)
    z, t, target, scored = out.z, out.t, out.target, out.scored
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


def _tail_batch():
    from tasks import load_task
    from sdtt_search.tokenizer import Tokenizer

    tok = Tokenizer.char_level("0123456789+-*/=,")
    pairs = list(itertools.islice(load_task("countdown", n=3).train_examples(2), 48))
    return tok, collate(tok, pairs, 22)


def test_tail_targets_are_the_teachers_column_by_column_path():
    """layout=tail: each row is a clean prefix of random length and a masked tail; the
    teacher reveals the tail one column per call, left to right, and a column's target
    is the teacher's log-probs at the call that revealed it (its conditional along its
    own path); the student is scored on the whole tail."""
    from fakes import ContextModel

    from sdtt_search.diffusion import subs_log_probs

    tok, batch = _tail_batch()
    teacher = ContextModel(tok.vocab_size, tok.mask_id, seed=3)
    out = sdtt_targets(teacher, batch, torch.Generator().manual_seed(0), dt=0.01, mask_id=tok.mask_id, eps=1e-5,
                       conditional=True, semi_ar=1.0, layout="tail")
    z, t, target, scored = out.z, out.t, out.target, out.scored
    assert out.noise is None  # only a noise-conditioned student gets one
    starts, tails = set(), []
    for r in range(z.shape[0]):
        cols = torch.nonzero(batch.maskable[r]).flatten()
        m = z[r, cols] == tok.mask_id
        k = int(torch.nonzero(m).min())
        starts.add(k)
        tails.append(len(cols) - k)
        assert bool(m[k:].all()) and torch.equal(z[r, cols][:k], batch.x[r, cols][:k])
        assert torch.equal(scored[r], z[r] == tok.mask_id)
        for i, col in enumerate(cols[k:].tolist()):  # column col is revealed at call i, after the ones before it
            seen = teacher.calls[i]["x"][r]
            assert seen[col] == tok.mask_id and not (seen[cols[k:k + i]] == tok.mask_id).any()
            lp = subs_log_probs(teacher(teacher.calls[i]["x"], attention_mask=batch.attention_mask),
                                teacher.calls[i]["x"], tok.mask_id)
            teacher.calls.pop()
            assert torch.allclose(target[r, col], lp[r, col].float())
    assert len(starts) > 5
    assert len(teacher.calls) == max(tails)  # one call per column of the longest tail


def test_tail_reveal_shows_path_tokens_but_never_the_first_tail_column():
    from fakes import ContextModel

    tok, batch = _tail_batch()
    outs = {}
    for reveal in (0.0, 1.0):
        teacher = ContextModel(tok.vocab_size, tok.mask_id, seed=3)
        outs[reveal] = sdtt_targets(teacher, batch, torch.Generator().manual_seed(0), dt=0.01, mask_id=tok.mask_id,
                                    eps=1e-5, conditional=True, semi_ar=1.0, layout="tail", tail_reveal=reveal)
    z0, target0 = outs[0.0].z, outs[0.0].target
    z1, target1, scored1 = outs[1.0].z, outs[1.0].target, outs[1.0].scored
    tail = z0 == tok.mask_id
    shown = tail & (z1 != tok.mask_id)
    assert shown.any() and torch.equal(scored1, tail & ~shown)
    first = tail & (tail.long().cumsum(-1) == 1)
    assert not (shown & first).any()
    assert torch.equal(target0, target1)  # the same teacher path: showing columns changes the input only
    with pytest.raises(ValueError, match="semi_ar=1.0"):
        sdtt_targets(ContextModel(tok.vocab_size, tok.mask_id), batch, None, dt=0.1, mask_id=tok.mask_id, eps=1e-5,
                     conditional=True, semi_ar=0.5, layout="tail")


def test_tail_distillation_writes_one_student_with_a_step_budget(tmp_path):
    """One round straight to min_steps (no power-of-two plan); the student decodes with a
    confidence threshold left to right within its budget, recorded in its checkpoint."""
    from sdtt_search.loading import load_model

    ar_dir = pretrain.run(pretrain_config(tmp_path / "ar", "objective=ar", "model.n_heads=1", "train.steps=2"))
    causal = pretrain.run(pretrain_config(tmp_path / "causal", "model.backbone=llama", "model.causal=true",
                                          "model.n_heads=1", f"init_from={ar_dir}", "semi_ar=1.0", "train.steps=2",
                                          "eval.sampler.method=confidence", "+eval.sampler.block_length=1"))
    gen = load_pretrained(causal).meta["gen_length"]
    rows = sdtt.run(sdtt_config(tmp_path / "tail", causal, "layout=tail", "semi_ar=1.0", f"teacher_steps={gen}",
                                "min_steps=3", "divergence=fkl", "eval.method=confidence", "eval.block_length=1",
                                "eval.threshold=0.8", "first_column_weight=3"))
    assert [(r["student_steps"], r["teacher_steps"]) for r in rows] == [(3, gen)]
    student = load_model(str(tmp_path / "tail" / "round-1-steps-3"))
    sampler = student.default_sampler()
    assert (sampler.steps, sampler.threshold, sampler.remasking, sampler.block_length) == (3, 0.8, "left_to_right", None)
    assert student.meta["sdtt"]["layout"] == "tail" and student.meta["sdtt"]["first_column_weight"] == 3.0
    out = student.generate(["1,2,3,6", "4,5,6,15"], sampler, seeds=[0, 1])
    assert out.nfe <= 3 and len(out.texts) == 2
    with pytest.raises(ValueError, match="layout=tail"):
        sdtt.run(sdtt_config(tmp_path / "bad", causal, "layout=tail", "semi_ar=0.5", "eval.block_length=1"))
    with pytest.raises(ValueError, match="layout="):
        sdtt.run(sdtt_config(tmp_path / "bad2", causal, "layout=spiral", "semi_ar=1.0", "eval.block_length=1"))
    with pytest.raises(ValueError, match="first_column_weight"):
        sdtt.run(sdtt_config(tmp_path / "bad3", causal, "layout=tail", "semi_ar=1.0", "eval.block_length=1",
                             "first_column_weight=-1"))


def test_a_causal_teacher_gives_tail_targets_in_one_cached_pass():
    """A plain causal teacher's tail targets come from one left-to-right scan with its KV
    cache; they must equal the teacher's full forward on its own sampled path (the
    logits at a column see only the columns before it)."""
    from types import SimpleNamespace

    from llama_fixtures import MASK, V, three_prompt_batch, tiny_llama_denoiser

    from sdtt_search.diffusion import subs_log_probs

    teacher, built = tiny_llama_denoiser(True), three_prompt_batch(gen_length=9)
    x = built.x.clone()
    x[built.gen_mask] = torch.randint(2, V, (int(built.gen_mask.sum()),), generator=torch.Generator().manual_seed(1))
    batch = SimpleNamespace(x=x, maskable=built.gen_mask, attention_mask=built.attention_mask)
    calls = []
    original = type(teacher).forward_span

    def counting(self, *args, **kwargs):
        calls.append(args[2:4])
        return original(self, *args, **kwargs)

    type(teacher).forward_span = counting
    try:
        out = sdtt_targets(teacher, batch, torch.Generator().manual_seed(0), dt=0.1, mask_id=MASK, eps=1e-5,
                           conditional=True, semi_ar=1.0, layout="tail")
        z, scored = out.z, out.scored
    finally:
        type(teacher).forward_span = original
    tail = z == MASK
    assert torch.equal(scored, tail) and tail.any() and not tail.all(-1).any()
    assert all(stop - start == 1 for start, stop in calls[1:])  # one column per call after the prompt
    target, path = causal_tail_targets(teacher, x, tail, built.attention_mask, mask_id=MASK,
                                       generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = subs_log_probs(teacher(path, attention_mask=built.attention_mask), torch.full_like(path, MASK), MASK)
    assert not (path[tail] == MASK).any() and torch.equal(path[~tail], x[~tail])
    assert torch.allclose(target[tail], full[tail].float(), atol=1e-4)


def test_first_column_weight_adds_the_divergence_at_each_rows_first_scored_column():
    """loss(w) = loss(0) + w x the forward KL at each row's first scored column (mean
    over rows), checked against the KL written out by hand; a row with nothing scored
    adds nothing and a negative weight is refused."""
    from llama_fixtures import MASK, V, three_prompt_batch, tiny_llama_denoiser

    from sdtt_search.diffusion import subs_log_probs

    student, built = tiny_llama_denoiser(True), three_prompt_batch(gen_length=6)
    g = torch.Generator().manual_seed(5)
    z = torch.where(built.gen_mask, torch.full_like(built.x, MASK), built.x)
    scored = built.gen_mask & (torch.rand(built.x.shape, generator=g) < 0.7)
    scored[2] = False  # the third row scores nothing
    target = torch.log_softmax(torch.randn(*built.x.shape, V, generator=g, dtype=torch.float64), -1)
    target[..., MASK] = float("-inf")
    t = torch.full((built.x.shape[0],), 0.5)

    def loss(w: float) -> float:
        return float(student_divergence(student, z, t, target, built.attention_mask, mask_id=MASK, kind="fkl",
                                        precision=64, scored=scored, first_column_weight=w).loss.detach())

    with torch.no_grad():
        s = subs_log_probs(student(z, attention_mask=built.attention_mask).double(), z, MASK)
    by_hand = []
    for row in range(2):
        col = int(scored[row].nonzero()[0])
        p, q = target[row, col].exp(), s[row, col]
        by_hand.append(sum(float(p[v] * (target[row, col, v] - q[v])) for v in range(V) if v != MASK))
    assert loss(2.5) - loss(0.0) == pytest.approx(2.5 * sum(by_hand) / 2, rel=1e-5)
    assert loss(0.0) > 0 and by_hand[0] != pytest.approx(by_hand[1])
    with pytest.raises(ValueError, match="first_column_weight"):
        loss(-1.0)
