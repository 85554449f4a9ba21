"""Repair (``Search(strategy="repair")``): failing diffusion candidates get their blamed
positions re-denoised, the rest kept; seeds by (seed, problem, index, round)."""
from __future__ import annotations

import json

import pytest
import torch

from sdtt_search import run as run_module
from sdtt_search.diffusion_model import DiffusionModel
from sdtt_search.interface import Completions
from sdtt_search.sampling_config import SamplerConfig
from sdtt_search.search.engine import Search, candidate_seed
from sdtt_search.search.repair import RepairConfig, repair_seed, to_blame
from sdtt_search.search.stopping import StopRule
from sdtt_search.tokenizer import Tokenizer
from search_fixtures import tiny_ckpt, tiny_model  # noqa: F401 - pytest fixtures
from tasks import load_task
from tasks.partial import UNKNOWN_VERDICT

TOK = Tokenizer.char_level("0123456789")
GEN = 17  # a 4x4 grid and EOS
SUDOKU = load_task("sudoku", size=4)
PROBLEMS = SUDOKU.problems("test", limit=3)


class Network(torch.nn.Module):
    """A denoiser stand-in: at generated column j, all mass on ``fill(problem)[j]``, the
    problem found from the prompt tokens of the row."""

    def __init__(self, fills: dict[str, str]):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.fills = {tuple(TOK.encode(SUDOKU.format_prompt(p))): TOK.encode(fills[p.id]) + [TOK.eos_id]
                      for p in PROBLEMS}

    def forward(self, x, attention_mask=None, sigma=None):
        logits = torch.full((*x.shape, TOK.vocab_size), -30.0)
        for b in range(x.shape[0]):
            prompt = tuple(t for t in x[b, : x.shape[1] - GEN].tolist() if t != TOK.pad_id)
            for j, token in enumerate(self.fills[prompt]):
                logits[b, x.shape[1] - GEN + j, token] = 30.0
        return logits


class Scripted:
    """``generate`` returns scripted completions (candidate i of a problem found by its seed);
    ``infill`` is ``DiffusionModel.infill`` over ``Network(fills)``, and is recorded."""

    kind = "diffusion"
    name = "scripted"
    gen_length = GEN
    context_length = None
    meta: dict = {}

    def __init__(self, script: dict[str, list[str]], fills: dict[str, str], seed: int = 0):
        self.by_seed = {candidate_seed(seed, pid, i): text for pid, texts in script.items() for i, text in enumerate(texts)}
        self.inner = DiffusionModel(Network(fills), TOK, {"gen_length": GEN, "sampling_steps": 2}, "oracle")
        self.tokenizer = TOK
        self.infills: list[tuple[list, list]] = []  # (rows given, seeds)

    def default_sampler(self) -> SamplerConfig:
        return SamplerConfig(method="ancestral", steps=2, gen_length=GEN)

    def generate(self, prompts, sampler, *, seeds):
        tokens = [TOK.encode(self.by_seed[s]) + [TOK.eos_id] for s in seeds]
        lps = [[-0.01 * (j + 1) for j in range(GEN)] for _ in seeds]
        return Completions(texts=[self.by_seed[s] for s in seeds], logprobs=[lp[: len(t)] for lp, t in zip(lps, tokens)],
                           nfe=2, positions=GEN, tokens=tokens, token_logprobs=lps)

    def infill(self, prompts, tokens, sampler, *, seeds):
        self.infills.append(([list(row) for row in tokens], list(seeds)))
        return self.inner.infill(prompts, tokens, sampler, seeds=seeds)


def wrong_in_cells(solution: str, cells: dict[int, str]) -> str:
    return "".join(cells.get(j, ch) for j, ch in enumerate(solution))


def _script():
    """Problem 0: candidate 0 right, candidate 1 with cell 3 changed (a clash the check blames);
    problem 1: both right; problem 2: candidate 0 with cell 1 changed."""
    a, b, c = (p.reference for p in PROBLEMS)
    bad_a = wrong_in_cells(a, {3: a[2]})  # cells 2 and 3 clash
    bad_c = wrong_in_cells(c, {1: c[2]})  # cells 1 and 2 clash
    return {PROBLEMS[0].id: [a, bad_a], PROBLEMS[1].id: [b, b], PROBLEMS[2].id: [bad_c, c]}


def test_repair_restores_a_candidate_whose_blamed_span_the_model_fills_correctly():
    fills = {p.id: p.reference for p in PROBLEMS}
    model = Scripted(_script(), fills)
    results = Search(model, SUDOKU, strategy="repair", repair=RepairConfig(rounds=2, steps=2)).generate_problems(
        PROBLEMS, 2)
    for result, problem in zip(results, PROBLEMS):
        assert [c.text for c in result.candidates] == [problem.reference] * 2  # in place, in order
        assert all(c.verified and c.correct for c in result.candidates)
    assert [[c.repaired_rounds for c in r.candidates] for r in results] == [[0, 1], [0, 0], [1, 0]]
    # one infill call of the two failing candidates, in (problem, index) order, each with its own seed
    (rows, seeds), = model.infills
    assert seeds == [repair_seed(0, PROBLEMS[0].id, 1, 1), repair_seed(0, PROBLEMS[2].id, 0, 1)]
    blamed = [[j for j, t in enumerate(row) if t is None] for row in rows]
    assert 3 in blamed[0] and {1, 2} <= set(blamed[1])
    # the repaired positions carry the repair's log-probs (0: the network is sure), the rest the drawn ones
    fixed = results[0].candidates[1]
    kept = [-0.01 * (j + 1) for j in range(GEN) if j not in blamed[0]]
    assert fixed.score == pytest.approx(sum(kept) / GEN, abs=1e-9)
    # what it cost: the repair rows' shares of the call are in the problem's compute
    assert results[1].repair == {"rows": 0, "nfe": 0.0, "seconds": 0.0}
    assert results[0].repair["rows"] == 1 and results[0].nfe > results[1].nfe
    assert results[0].positions == 3 * GEN and results[1].positions == 2 * GEN


def test_unblamed_positions_are_never_changed():
    # a network that would write 4s everywhere: only the blamed positions may become 4
    model = Scripted(_script(), {p.id: "4" * 16 for p in PROBLEMS})
    results = Search(model, SUDOKU, strategy="repair", repair=RepairConfig(rounds=3, steps=2)).generate_problems(
        PROBLEMS, 2)
    script = _script()
    for r, problem in zip(results, PROBLEMS):
        for i, candidate in enumerate(r.candidates):
            original = script[problem.id][i]
            if not candidate.repaired_rounds:
                assert candidate.text == original
                continue
            given = [row for rows, _ in model.infills for row in rows]
            blamed_ever = {j for row in given for j, t in enumerate(row) if t is None}
            changed = {j for j, (x, y) in enumerate(zip(original, candidate.text)) if x != y}
            assert changed and changed <= blamed_ever
            assert set(candidate.text[j] for j in changed) == {"4"}
    # every infill row held the candidate's current tokens outside the blamed positions
    first_rows, _ = model.infills[0]
    bad = TOK.encode(script[PROBLEMS[0].id][1]) + [TOK.eos_id]
    assert [t for t in first_rows[0] if t is not None] == [t for t, g in zip(bad, first_rows[0]) if g is not None]


def test_a_verified_candidate_is_never_touched_and_rounds_are_a_limit():
    model = Scripted(_script(), {p.id: "4" * 16 for p in PROBLEMS})  # repairs never succeed
    results = Search(model, SUDOKU, strategy="repair", repair=RepairConfig(rounds=3, steps=1)).generate_problems(
        PROBLEMS, 2)
    plain = Search(Scripted(_script(), {p.id: "4" * 16 for p in PROBLEMS}), SUDOKU).generate_problems(PROBLEMS, 2)
    for repaired, drawn in zip(results, plain):
        for c, d in zip(repaired.candidates, drawn.candidates):
            if d.verified:
                assert c.repaired_rounds == 0 and (c.text, c.score, c.verified) == (d.text, d.score, d.verified)
            else:
                assert c.repaired_rounds == 3 and not c.verified
    assert len(model.infills) == 3 and all(len(rows) == 2 for rows, _ in model.infills)  # two candidates, 3 rounds
    assert [s for _, seeds in model.infills for s in seeds][::2] == [repair_seed(0, PROBLEMS[0].id, 1, r)
                                                                    for r in (1, 2, 3)]
    assert sum(r.repair["rows"] for r in results) == 6


def test_without_blame_the_least_confident_tokens_are_redrawn():
    class NoBlame(type(SUDOKU)):
        def partial_check(self, problem, pieces, ended=False):
            return UNKNOWN_VERDICT

    task = NoBlame(size=4)
    tokens = TOK.encode("1234123412341234") + [TOK.eos_id]
    lps = [-0.1] * GEN
    lps[7], lps[2], lps[16], lps[11] = -3.0, -2.0, -5.0, -2.0
    assert to_blame(task, PROBLEMS[0], TOK, tokens, lps, 3, verified=False) == [2, 7, 16]
    assert to_blame(task, PROBLEMS[0], TOK, tokens, lps, 4, verified=False) == [2, 7, 11, 16]
    assert to_blame(task, PROBLEMS[0], TOK, tokens, lps, 4, verified=True) == []
    assert to_blame(task, PROBLEMS[0], TOK, tokens, lps, 4, verified=None) == []  # no verifier, nothing violated


def test_the_default_strategy_is_plain_best_of_n():
    model = Scripted(_script(), {p.id: p.reference for p in PROBLEMS})
    default = Search(model, SUDOKU).generate_problems(PROBLEMS, 2)
    named = Search(model, SUDOKU, strategy="best_of_n").generate_problems(PROBLEMS, 2)
    assert model.infills == []
    timeless = lambda results: [{**r.to_json(), "seconds": None} for r in results]  # noqa: E731
    assert timeless(default) == timeless(named)
    line = default[0].to_json()
    assert "repair" not in line and all("repaired_rounds" not in c for c in line["candidates"])
    assert [c.text for c in default[0].candidates] == _script()[PROBLEMS[0].id]


def test_bad_strategies_and_ar_models_are_one_line_errors():
    model = Scripted(_script(), {p.id: p.reference for p in PROBLEMS})
    with pytest.raises(ValueError, match="strategy='sample' is unknown"):
        Search(model, SUDOKU, strategy="sample")
    with pytest.raises(ValueError, match="for strategy='repair'"):
        Search(model, SUDOKU, repair=RepairConfig())
    with pytest.raises(ValueError, match="repair.rounds=0"):
        RepairConfig(rounds=0)

    class AR:
        kind, name = "ar", "countdown-cd3-ar"

        def generate(self, prompts, sampler, *, seeds):
            raise AssertionError

    with pytest.raises(ValueError, match="autoregressive model \\(countdown-cd3-ar\\).*use strategy=best_of_n") as err:
        Search(AR(), SUDOKU, SamplerConfig(method="autoregressive"), strategy="repair")
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ a real network: seeds and batching
def _tiny_search(model, batch_size, **extra):
    return Search(model, load_task("countdown", n=3), model.default_sampler(), batch_size=batch_size, seed=7,
                  strategy="repair", repair=RepairConfig(rounds=2, steps=2, k=3), **extra)


def test_repairs_do_not_depend_on_batching_and_stopping_keeps_the_full_runs_first(tiny_model):  # noqa: F811
    problems = load_task("countdown", n=3).problems(limit=4)
    runs = {b: _tiny_search(tiny_model, b).generate_problems(problems, 3) for b in (1, 5, 256)}
    rows = {b: [[(c.text, c.score, c.repaired_rounds) for c in r.candidates] for r in results]
            for b, results in runs.items()}
    assert rows[1] == rows[5] == rows[256]
    assert any(c.repaired_rounds for r in runs[256] for c in r.candidates)  # repairs really ran
    plain = Search(tiny_model, load_task("countdown", n=3), tiny_model.default_sampler(), batch_size=256,
                   seed=7).generate_problems(problems, 3)
    changed = [(c.text != d.text) for r, s in zip(runs[256], plain) for c, d in zip(r.candidates, s.candidates)]
    assert any(changed)
    stopped = _tiny_search(tiny_model, 4).until_stopped(problems, 3, StopRule(1))
    for s, full in zip(stopped, runs[256]):
        assert [(c.text, c.repaired_rounds) for c in s.candidates] == \
               [(c.text, c.repaired_rounds) for c in full.candidates[: len(s.candidates)]]


# ------------------------------------------------------------------ the command line: resume, records
def _args(model, out, *extra):
    return ["task=countdown", f"model={model}", "samples=3", "limit=6", "seed=0", "batch_size=6", "device=cpu",
            "progress=false", "plot=false", f"output_dir={out}", "strategy=repair", "repair.rounds=2",
            "repair.steps=2", *extra]


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_resumed_repair_run_equals_an_uninterrupted_one_and_refuses_another_strategy(tiny_ckpt, tmp_path,  # noqa: F811
                                                                                      capsys):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run_module.main(_args(tiny_ckpt, full)) == 0
    assert run_module.main(_args(tiny_ckpt, cut)) == 0
    path = cut / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:40])  # killed while writing line 3
    assert run_module.main(_args(tiny_ckpt, cut)) == 0
    by_id = lambda rows: {r["id"]: [(c["text"], c["score"], c["repaired_rounds"]) for c in r["candidates"]]  # noqa: E731
                          for r in rows}
    assert by_id(_rows(path)) == by_id(_rows(full / "results.jsonl"))
    metrics = json.loads((full / "metrics.json").read_text())
    assert metrics["repair"]["rows"] == sum(r["repair"]["rows"] for r in _rows(full / "results.jsonl")) > 0
    assert json.loads((full / "run_config.json").read_text())["strategy"] == {"name": "repair", "rounds": 2,
                                                                               "steps": 2, "k": 4}
    capsys.readouterr()
    assert run_module.main(_args(tiny_ckpt, full, "strategy=best_of_n")) != 0
    assert "results of another run (strategy=" in capsys.readouterr().err
    assert run_module.main(_args(tiny_ckpt, full, "repair.rounds=3")) != 0


@pytest.mark.parametrize("override,needle", [
    ("strategy=resample", "strategy='resample' is unknown"),
    ("repair.rounds=0", "repair.rounds=0 must be a positive integer"),
    ("+repair.depth=2", "repair.depth is not a repair option"),
])
def test_bad_repair_options_are_one_line_errors(override, needle, tiny_ckpt, tmp_path, capsys):  # noqa: F811
    assert run_module.main(_args(tiny_ckpt, tmp_path, override)) != 0
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err
