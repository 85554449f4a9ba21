"""Temporal voting (``Search(temporal=True)``): answers read from each sampler step's
prediction of the clean completion vote beside the final answers, later steps weighing more."""
from __future__ import annotations

import itertools
import json
import math

import pytest

from sdtt_search import load_model
from sdtt_search import run as run_module
from sdtt_search.cli import task_from_config
from sdtt_search.sampling_config import SamplerConfig
from sdtt_search.search.engine import Search
from sdtt_search.search.metrics import majority_at_k, weighted_vote_at_k, weighted_vote_credit
from sdtt_search.search.results import Candidate
from sdtt_search.search.select import TEMPORAL_DECAY, temporal, temporal_votes


def _candidate(answer, trail, correct=False):
    return Candidate(text="", answer=answer, correct=correct, verified=None, score=0.0, trail=trail)


def test_votes_weigh_later_steps_more_and_the_final_answer_by_one():
    c = _candidate("5", [[None, False], ["7", False], ["7", False], ["5", True]])
    w = lambda s: math.exp(-TEMPORAL_DECAY * (4 - s) / 4)  # noqa: E731
    assert temporal_votes(c) == pytest.approx({"7": w(2) + w(3), "5": 1.0 + w(4)})
    assert temporal_votes(_candidate(None, None)) == {}
    # three candidates: "5" is the majority of final answers, "7" carries more weight over the steps
    late_seven = [["7", False]] * 4
    cands = [_candidate("5", [[None, False]] * 4), _candidate("5", [[None, False]] * 4), _candidate("7", late_seven)]
    total_seven = 1.0 + sum(w(s) for s in range(1, 5))
    assert total_seven > 2.0 and temporal(cands) == "7"
    assert temporal([_candidate(None, [[None, False]])]) is None


def test_weighted_vote_at_k_is_exact_at_1_and_n_and_averages_subsets_between():
    votes = [{"a": 1.0}, {"b": 1.5}, {"a": 1.0, "c": 0.2}, {"c": 2.0}, {"b": 0.1}, {"a": 0.5}]
    truth = {"a": True, "b": False, "c": False}
    assert weighted_vote_credit(votes, truth) == 1.0  # a: 2.5, c: 2.2, b: 1.6
    assert weighted_vote_at_k(votes, truth, 6) == 1.0
    assert weighted_vote_at_k(votes, truth, 1) == pytest.approx(3 / 6)
    brute = [weighted_vote_credit([votes[i] for i in s], truth) for s in itertools.combinations(range(6), 3)]
    assert weighted_vote_at_k(votes, truth, 3, subsets=4000) == pytest.approx(sum(brute) / len(brute), abs=0.03)
    # ties split the credit; unit weights on one answer each are a plain majority vote
    assert weighted_vote_credit([{"a": 1.0}, {"b": 1.0}], truth) == 0.5
    answers = ["a", "b", "a", "c", "b", "a"]
    for k in (1, 6):
        assert weighted_vote_at_k([{x: 1.0} for x in answers], truth, k) == majority_at_k(answers, truth, k)
    with pytest.raises(ValueError):
        weighted_vote_at_k(votes, truth, 7)


@pytest.mark.parametrize("name", ["countdown-cd3-wide-teacher", "sudoku4-sdtt-4"])
def test_a_trace_holds_each_steps_prediction_and_agrees_with_what_is_committed(name):
    model = load_model(name)
    task = task_from_config(model.meta["task"])
    prompts = [task.format_prompt(p) for p in task.problems("test", limit=3)]
    sampler = model.default_sampler()
    plain = model.generate(prompts, sampler, seeds=[7, 8, 9])
    traced = model.generate(prompts, sampler, seeds=[7, 8, 9], trace=True)
    assert traced.texts == plain.texts and traced.tokens == plain.tokens and plain.trails is None  # tracing draws nothing
    assert all(len(trail) == traced.nfe for trail in traced.trails) or sampler.method == "ancestral"
    if "countdown" in name:  # blocks of one token left to right: step j's prediction is the final text's first j+1 tokens
        tok = model.tokenizer
        for trail, ids in zip(traced.trails, traced.tokens):
            for j, step in enumerate(trail):
                assert step == tok.decode(ids[: j + 1]) or tok.eos_id in ids[: j + 1]
    else:  # every step predicts all 17 positions; the last prediction is mostly the final grid
        assert all(1 <= len(trail) <= sampler.steps + 1 for trail in traced.trails)
        assert sum(trail[-1][:16] == text[:16] for trail, text in zip(traced.trails, traced.texts)) >= 1


def test_temporal_search_keeps_the_candidates_and_adds_the_temporal_curve():
    model = load_model("sudoku4-sdtt-2")
    task = task_from_config(model.meta["task"])
    problems = task.problems("test", limit=4)
    plain = Search(model, task, seed=2).best_of_n(problems, 4)
    voted = Search(model, task, seed=2, temporal=True).best_of_n(problems, 4)
    texts = lambda r: [[c.text for c in p.candidates] for p in r.problems]  # noqa: E731
    assert texts(voted) == texts(plain)
    assert "temporal@4" in voted.metrics["accuracy"] and "temporal@4" not in plain.metrics["accuracy"]
    assert all("temporal" in p.selected for p in voted.problems) and "temporal" not in plain.problems[0].selected
    line = voted.problems[0].to_json()
    assert all(isinstance(c["trail"], list) and len(c["trail"][0]) == 2 for c in line["candidates"])
    assert all("trail" not in c for c in plain.problems[0].to_json()["candidates"])


def test_temporal_voting_errors_are_one_line(tmp_path, capsys):
    class AR:
        kind, name = "ar", "countdown-cd3-ar"

        def generate(self, prompts, sampler, *, seeds):
            raise AssertionError

    with pytest.raises(ValueError, match="countdown-cd3-ar gives none.*set temporal=false"):
        Search(AR(), task_from_config({"name": "countdown", "options": {"n": 3}}),
               SamplerConfig(method="autoregressive"), temporal=True)
    model = load_model("sudoku4-sdtt-2")
    with pytest.raises(ValueError, match="strategy=smc changes them after"):
        Search(model, task_from_config(model.meta["task"]), strategy="smc", temporal=True)
    out = tmp_path / "run"
    args = ["task=sudoku", "model=sudoku4-sdtt-2", "samples=2", "limit=2", f"output_dir={out}", "plot=false",
            "progress=false"]
    assert run_module.main([*args, "temporal=true"]) == 0
    assert json.loads((out / "run_config.json").read_text())["temporal"] is True
    assert "temporal@2" in json.loads((out / "metrics.json").read_text())["accuracy"]
    capsys.readouterr()
    assert run_module.main(args) != 0  # resuming without temporal: refused
    assert "results of another run (temporal=True" in capsys.readouterr().err
