"""Particle search (``Search(strategy="smc")``): particles decoded stage by stage, the ones a
partial check finds violated replaced by copies of survivors; seeds by (seed, problem,
particle, stage); samplers that stop after some steps and continue where they stopped."""
from __future__ import annotations

import json
import random

import pytest
import torch

from sdtt_search import load_model
from sdtt_search import run as run_module
from sdtt_search.cli import task_from_config
from sdtt_search.diffusion.commit_rules import transfer_counts
from sdtt_search.interface import Completions
from sdtt_search.sampling_config import SamplerConfig
from sdtt_search.search.engine import Search
from sdtt_search.search.particles import (ParticleConfig, particle_seed, parents, partial_pieces, resample_seed,
                                          stages)
from sdtt_search.search.stopping import StopRule
from sdtt_search.tokenizer import Tokenizer
from tasks import load_task
from tasks.partial import CONSISTENT, VIOLATED, PartialVerdict

TOK = Tokenizer.char_level("0123456789")
GEN = 17  # a 4x4 grid and EOS
SUDOKU = load_task("sudoku", size=4)
PROBLEMS = SUDOKU.problems("test", limit=3)


class NineFirst(type(SUDOKU)):
    """Sudoku whose partial check finds a completion violated when its first cell is a 9."""

    def partial_check(self, problem, pieces, ended=False):
        if pieces and pieces[0] == "9":
            return PartialVerdict(VIOLATED, (0,), "a 9")
        return PartialVerdict(CONSISTENT)


class Scripted:
    """A diffusion model whose ``infill`` is scripted: a stage (``stop_after``) commits the
    first masked position, with the digit ``first[seed]`` (the reference's own otherwise);
    the last stage fills every masked position from the reference and ends with EOS.
    Committed tokens get log-prob ``-1 - 0.1 * (their digit)``."""

    kind = "diffusion"
    name = "scripted"
    gen_length = GEN
    context_length = None
    tokenizer = TOK
    meta: dict = {}

    def __init__(self, first: dict[int, str]):
        self.first = first
        self.calls: list[dict] = []
        self.refs = {SUDOKU.format_prompt(p): p.reference for p in PROBLEMS}

    def default_sampler(self) -> SamplerConfig:
        return SamplerConfig(method="ancestral", steps=2, gen_length=GEN)

    def generate(self, prompts, sampler, *, seeds):  # pragma: no cover - particle search only infills
        raise AssertionError("particle search decodes with infill")

    def infill(self, prompts, tokens, sampler, *, seeds, stop_after=None):
        self.calls.append({"rows": [list(r) for r in tokens], "seeds": list(seeds), "steps": sampler.steps,
                           "stop_after": stop_after})
        out, lps = [], []
        for prompt, row, seed in zip(prompts, tokens, seeds):
            full = TOK.encode(self.refs[prompt]) + [TOK.eos_id]
            row, lp = list(row), [0.0] * GEN
            todo = [j for j, t in enumerate(row) if t is None]
            for j in todo[:1] if stop_after is not None else todo:
                row[j] = TOK.encode(self.first.get(seed, self.refs[prompt][0]))[0] if j == 0 else full[j]
                lp[j] = -1.0 - 0.1 * int(TOK.decode([row[j]]) or 0)
            out.append([TOK.mask_id if t is None else t for t in row])
            lps.append(lp)
        texts = [TOK.decode(r[: r.index(TOK.eos_id)] if TOK.eos_id in r else r) for r in out]
        return Completions(texts=texts, logprobs=[lp[: GEN] for lp in lps], nfe=stop_after or sampler.steps,
                           positions=GEN, tokens=out, token_logprobs=lps)


def _seeds(problem: int, indices, stage: int) -> list[int]:
    return [particle_seed(0, PROBLEMS[problem].id, i, stage) for i in indices]


def test_violated_particles_take_a_survivors_state_and_continue_with_their_own_noise():
    # problem 0: particles 0, 1, 3 commit a 9 first (violated), particle 2 the right digit;
    # problem 1: every particle right; problem 2: every particle a 9 (nothing to copy)
    first = {s: "9" for s in _seeds(0, (0, 1, 3), 0) + _seeds(2, range(4), 0)}
    model = Scripted(first)
    results = Search(model, NineFirst(size=4), strategy="smc", smc=ParticleConfig(every=1)).generate_problems(
        PROBLEMS, 4)
    a, b, c = (p.reference for p in PROBLEMS)
    assert [cand.text for cand in results[0].candidates] == [a] * 4  # every particle goes on from particle 2's state
    assert all(cand.verified and cand.correct for cand in results[0].candidates)
    assert [cand.text for cand in results[1].candidates] == [b] * 4
    assert [cand.text for cand in results[2].candidates] == ["9" + c[1:]] * 4  # stranded: they go on as they were
    assert not any(cand.verified for cand in results[2].candidates)
    assert [r.particles for r in results] == [{"checks": 4, "dropped": 3, "stranded": 0},
                                              {"checks": 4, "dropped": 0, "stranded": 0},
                                              {"checks": 4, "dropped": 0, "stranded": 4}]
    # two stages (2 steps, a check after each): the first stops after one step, the second runs the step left
    stage0, stage1 = model.calls
    assert (stage0["steps"], stage0["stop_after"], stage1["steps"], stage1["stop_after"]) == (2, 1, 1, None)
    assert stage0["seeds"] == [s for p in range(3) for s in _seeds(p, range(4), 0)]
    assert stage1["seeds"] == [s for p in range(3) for s in _seeds(p, range(4), 1)]  # fresh noise per particle
    assert all(row == [None] * GEN for row in stage0["rows"])
    copied = TOK.encode(a[0])[0]
    assert [row[0] for row in stage1["rows"][:4]] == [copied] * 4
    # a copy takes the survivor's log-probs too: every candidate of problem 0 scores alike
    assert len({cand.score for cand in results[0].candidates}) == 1


def test_parents_copy_survivors_by_their_weights():
    rng = random.Random(0)
    assert parents([True, True, True], [0.0] * 3, "uniform", rng) == [0, 1, 2]
    assert parents([False, False], [0.0] * 2, "uniform", rng) == [0, 1]  # no survivor: each keeps its own
    picks = [parents([False, True, True], [0.0, -0.1, -10.0], "confidence", rng)[0] for _ in range(400)]
    assert picks.count(1) > 390  # exp(-0.1) against exp(-10)
    picks = [parents([False, True, True], [0.0, -0.1, -10.0], "uniform", rng)[0] for _ in range(400)]
    assert 150 < picks.count(1) < 250
    assert parents([False, True], [0.0, float("-inf")], "confidence", rng) == [1, 1]  # all weights zero: uniform
    with pytest.raises(ValueError, match="smc.weights='best' is unknown"):
        ParticleConfig(weights="best")
    with pytest.raises(ValueError, match="smc.every=0 must be a positive integer"):
        ParticleConfig(every=0)


def test_stages_follow_the_schedule_of_one_call():
    assert stages(4, 1) == [(4, 1), (3, 1), (2, 1), (1, None)]
    assert stages(5, 2) == [(5, 2), (3, 2), (1, None)]
    assert stages(3, 5) == [(3, None)]
    # blocks: every call runs the whole schedule (decoded blocks are skipped), stages of whole blocks
    assert stages(12, 1, blocks=12) == [(12, 1)] * 11 + [(12, None)]
    assert stages(8, 3, blocks=4) == [(8, 4), (8, None)]  # 2 steps a block: every=3 rounds up to 4
    with pytest.raises(ValueError, match="4 blocks in 6 steps"):
        stages(6, 1, blocks=4)


def test_a_threshold_students_budget_is_rounded_down_to_whole_blocks():
    model = load_model("countdown-cd3-wide-sdtt-8")  # blocks of 2 over 12 tokens, a threshold with a 10-step budget
    task = task_from_config(model.meta["task"])
    sampler = model.default_sampler()
    assert sampler.threshold is not None and sampler.steps % 6
    results = Search(model, task, sampler, strategy="smc").generate_problems(task.problems("test", limit=2), 2)
    assert all(r.particles["checks"] == 2 * 5 for r in results)  # 6 steps, one block each: 5 checks per particle


def test_partial_pieces_stop_at_a_committed_eos():
    assert partial_pieces(TOK, [TOK.encode("1")[0], None, TOK.eos_id, TOK.encode("2")[0]]) == (["1", None], True)
    assert partial_pieces(TOK, [None, TOK.encode("3")[0]]) == ([None, "3"], False)


@pytest.mark.parametrize("name", ["sudoku4-sdtt-4", "countdown-cd3-wide-teacher"])
def test_a_sampler_stopped_after_m_steps_continues_on_the_schedule_of_one_call(name):
    model = load_model(name)
    task = task_from_config(model.meta["task"])
    prompts = [task.format_prompt(p) for p in task.problems("test", limit=3)]
    sampler = model.default_sampler()
    if "sudoku" in name:  # LLaDA's linear schedule in one block: 17 positions in 4 steps commit 5, 4, 4, 4
        sampler = sampler.replace(method="confidence", block_length=None)
    gen = model.gen_length
    empty = [[None] * gen for _ in prompts]
    full = model.infill(prompts, empty, sampler, seeds=[1, 2, 3])
    assert model.infill(prompts, empty, sampler, seeds=[1, 2, 3], stop_after=sampler.steps).tokens == full.tokens
    plan = stages(sampler.steps, 1, 1 if sampler.block_length is None else gen // sampler.block_length)
    rows, committed = empty, []
    for stage, (steps, stop_after) in enumerate(plan):
        out = model.infill(prompts, rows, sampler.replace(steps=steps), seeds=[10 + stage] * 3, stop_after=stop_after)
        rows = [[None if t == model.tokenizer.mask_id else t for t in row] for row in out.tokens]
        committed.append([sum(t is not None for t in row) for row in rows])
    if "sudoku" in name:
        expected = transfer_counts(torch.tensor([gen]), sampler.steps)[0].cumsum(0).tolist()
    else:  # blocks of one, left to right: one more position per step
        expected = list(range(1, gen + 1))
        assert all(all(t is not None for t in row[: committed[0][0]]) for row in rows)
    assert [c[0] for c in committed] == expected and all(len(set(c)) == 1 for c in committed)


def test_ancestral_stop_after_leaves_masks_and_skips_the_noise_removal():
    model = load_model("sudoku4-sdtt-4")
    prompts = [SUDOKU.format_prompt(p) for p in PROBLEMS]
    sampler = model.default_sampler().replace(steps=8)
    out = model.infill(prompts, [[None] * GEN] * 3, sampler, seeds=[4, 5, 6], stop_after=2)
    masked = [sum(t == TOK.mask_id for t in row) for row in out.tokens]
    assert all(0 < m < GEN for m in masked) and out.nfe <= 2
    full = model.infill(prompts, [[None] * GEN] * 3, sampler, seeds=[4, 5, 6])
    assert all(TOK.mask_id not in row for row in full.tokens)


def _texts(results):
    return {r.id: [(c.text, c.score) for c in r.candidates] for r in results}


@pytest.mark.parametrize("name", ["sudoku4-sdtt-4", "countdown-cd3-wide-teacher"])
def test_particles_do_not_depend_on_the_batch_or_the_problems_beside_them(name):
    model = load_model(name)
    task = task_from_config(model.meta["task"])
    problems = task.problems("test", limit=4)
    config = ParticleConfig(every=2, weights="confidence")
    together = Search(model, task, strategy="smc", smc=config, batch_size=512, seed=3).generate_problems(problems, 6)
    alone = [r for p in problems
             for r in Search(model, task, strategy="smc", smc=config, batch_size=5, seed=3).generate_problems([p], 6)]
    assert _texts(together) == _texts(alone)
    assert sum(r.particles["checks"] for r in together) > 0
    # with early stopping each round is its own group of particles: the first round is a
    # 2-particle search of the same problem
    stopped = Search(model, task, strategy="smc", smc=config, batch_size=7, seed=3).until_stopped(
        problems, 6, StopRule(2))
    first_round = Search(model, task, strategy="smc", smc=config, batch_size=64, seed=3).generate_problems(problems, 2)
    assert {key: value[:2] for key, value in _texts(stopped).items()} == _texts(first_round)


def test_particle_search_solves_more_than_independent_draws_on_cd3():
    # the CD3 teacher decodes left to right; a partial check of each finished equation drops
    # the particles whose arithmetic went wrong: pass@1 rises at the same network calls
    model = load_model("countdown-cd3-wide-teacher")
    task = task_from_config(model.meta["task"])  # operands 1-100, targets 1-100
    problems = task.problems("test", limit=24)
    plain = Search(model, task, seed=1).best_of_n(problems, 8)
    smc = Search(model, task, strategy="smc", seed=1).best_of_n(problems, 8)
    assert smc.metrics["accuracy"]["pass@1"] > plain.metrics["accuracy"]["pass@1"] + 0.1
    assert sum(r.nfe for r in smc.problems) == pytest.approx(sum(r.nfe for r in plain.problems))


def test_smc_on_the_command_line_records_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["task=sudoku", "model=sudoku4-sdtt-2", "samples=4", "strategy=smc", "smc.every=1", f"output_dir={out}",
            "plot=false", "progress=false", "batch_size=7"]
    assert run_module.main([*args, "limit=2"]) == 0
    assert run_module.main([*args, "limit=4"]) == 0  # resumes the two done, adds two
    fresh = tmp_path / "fresh"
    assert run_module.main([*args[:-4], f"output_dir={fresh}", "plot=false", "progress=false", "batch_size=64",
                            "limit=4"]) == 0
    lines = lambda d: {r["id"]: [c["text"] for c in r["candidates"]]  # noqa: E731
                       for r in map(json.loads, (d / "results.jsonl").read_text().splitlines())}
    assert lines(out) == lines(fresh)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["smc"]["checks"] == 4 * 4  # sudoku4-sdtt-2 decodes in 2 steps: one check per particle
    assert json.loads((out / "run_config.json").read_text())["strategy"] == {"name": "smc", "every": 1,
                                                                             "weights": "uniform"}
    assert run_module.main([*args, "limit=4", "smc.weights=confidence"]) != 0  # another strategy: no resume


def test_smc_errors_are_one_line(tmp_path, capsys):
    model = Scripted({})
    with pytest.raises(ValueError, match="for strategy='smc'"):
        Search(model, SUDOKU, smc=ParticleConfig())

    class AR:
        kind, name = "ar", "countdown-cd3-ar"

        def generate(self, prompts, sampler, *, seeds):
            raise AssertionError

    with pytest.raises(ValueError, match="strategy=smc on an AR model extends prefixes.*use strategy=best_of_n"):
        Search(AR(), SUDOKU, SamplerConfig(method="autoregressive"), strategy="smc")
    capsys.readouterr()
    assert run_module.main(["task=sudoku", "strategy=smc", "+smc.depth=2", "limit=1", f"output_dir={tmp_path}"]) != 0
    err = capsys.readouterr().err.strip()
    assert "smc.depth is not a smc option; use smc.every, smc.weights" in err and "\n" not in err


# ------------------------------------------------------------------ the AR counterpart: prefixes
class ScriptedAR:
    """An AR model whose ``extend`` is scripted: stage 0 draws the first token, ``first[seed]``
    (the reference's own otherwise); later stages draw the reference's next tokens."""

    kind = "ar"
    name = "scripted-ar"
    gen_length = GEN
    context_length = None
    tokenizer = TOK
    meta: dict = {}

    def __init__(self, first: dict[int, str]):
        self.first, self.calls = first, []
        self.refs = {SUDOKU.format_prompt(p): p.reference for p in PROBLEMS}

    def default_sampler(self) -> SamplerConfig:
        return SamplerConfig(method="autoregressive", steps=GEN, gen_length=GEN)

    def generate(self, prompts, sampler, *, seeds):  # pragma: no cover - particle search only extends
        raise AssertionError("particle search extends prefixes")

    def extend(self, prompts, prefixes, sampler, *, seeds, max_tokens):
        self.calls.append({"prefixes": [list(x) for x in prefixes], "seeds": list(seeds), "max_tokens": max_tokens})
        tokens = []
        for prompt, prefix, seed in zip(prompts, prefixes, seeds):
            full = TOK.encode(self.refs[prompt]) + [TOK.eos_id]
            new = full[len(prefix): len(prefix) + max_tokens]
            if not prefix:
                new[0] = TOK.encode(self.first.get(seed, self.refs[prompt][0]))[0]
            tokens.append(new)
        return Completions(texts=[""] * len(prompts), logprobs=[[-0.5] * len(t) for t in tokens], nfe=max_tokens,
                           positions=max_tokens, tokens=tokens, token_logprobs=[[-0.5] * len(t) for t in tokens])


def test_ar_prefixes_that_a_check_finds_wrong_take_a_survivors_prefix():
    first = {s: "9" for s in _seeds(0, (0, 1, 3), 0) + _seeds(2, range(4), 0)}
    model = ScriptedAR(first)
    results = Search(model, NineFirst(size=4), strategy="smc", smc=ParticleConfig(every=6)).generate_problems(
        PROBLEMS, 4)
    a, b, c = (p.reference for p in PROBLEMS)
    assert [cand.text for cand in results[0].candidates] == [a] * 4
    assert [cand.text for cand in results[2].candidates] == ["9" + c[1:]] * 4
    assert [r.particles["dropped"] for r in results] == [3, 0, 0] and results[2].particles["stranded"] == 8
    # 17 positions in stages of 6 tokens: 6, 6, 5; every particle of stage 1 extends particle 2's prefix
    assert [call["max_tokens"] for call in model.calls] == [6, 6, 5]
    assert [x[:1] for x in model.calls[1]["prefixes"][:4]] == [TOK.encode(a[0])] * 4
    assert model.calls[1]["seeds"][:4] == _seeds(0, range(4), 1)


def test_the_ar_twin_prunes_prefixes_batch_invariantly_and_solves_more():
    model = load_model("countdown-cd3-wide-ar", ar_backend="transformers")
    task = task_from_config(model.meta["task"])
    problems = task.problems("test", limit=12)
    config = ParticleConfig(every=3)
    together = Search(model, task, strategy="smc", smc=config, batch_size=512, seed=4).generate_problems(problems, 4)
    alone = [r for p in problems
             for r in Search(model, task, strategy="smc", smc=config, batch_size=3, seed=4).generate_problems([p], 4)]
    assert _texts(together) == _texts(alone)
    plain = Search(model, task, seed=4).generate_problems(problems, 4)
    solved = lambda results: sum(c.correct for r in results for c in r.candidates)  # noqa: E731
    assert solved(together) > solved(plain)
