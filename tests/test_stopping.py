"""Early stopping of best-of-N: the rules (``search.stopping``) and what ``Search`` does with them."""
from __future__ import annotations

import random

import pytest

from sdtt_search.search.engine import Search
from sdtt_search.search.results import Candidate
from sdtt_search.search.stopping import StopRule, leader_probability, top_two
from test_search_engine import SAMPLER, _FakeTask, _Problem, _ScriptedModel


def _candidates(answers, verified=None):
    verified = verified or [False] * len(answers)
    return [Candidate(text=f"x:{a}", answer=a, correct=False, verified=v, score=0.0) for a, v in zip(answers, verified)]


def test_top_two_counts_answers_and_ignores_missing_ones():
    assert top_two(["a", "b", "a", None, None, None]) == (2, 1)
    assert top_two(["a"]) == (1, 0) and top_two([None, None]) == (0, 0) and top_two([]) == (0, 0)


def test_leader_probability_is_the_beta_tail():
    def beta_tail(a: int, b: int, points: int = 200_000) -> float:  # P(p > 1/2), p ~ Beta(a + 1, b + 1), midpoint rule
        xs = [(i + 0.5) / points for i in range(points)]
        dens = [x ** a * (1 - x) ** b for x in xs]
        return sum(d for x, d in zip(xs, dens) if x > 0.5) / sum(dens)

    assert leader_probability(1, 0) == pytest.approx(0.75)  # Beta(2, 1): 1 - (1/2)^2
    assert leader_probability(3, 3) == pytest.approx(0.5)
    for a, b in [(2, 0), (5, 1), (4, 2), (9, 3), (7, 6)]:
        assert leader_probability(a, b) == pytest.approx(beta_tail(a, b), abs=1e-6), (a, b)
    assert leader_probability(6, 1) > leader_probability(5, 1) > leader_probability(5, 2)


def test_the_exact_majority_rule_stops_only_once_no_remaining_samples_can_change_the_answer():
    rule = StopRule(1, "majority")
    assert rule.done(_candidates(["a", "a", "a"]), remaining=2)  # 3 > 0 + 2
    assert not rule.done(_candidates(["a", "a", "a"]), remaining=3)  # 3 more "b" would tie
    assert not rule.done(_candidates(["a", "a", "b"]), remaining=1)  # 2 > 1 + 1 fails: one "b" ties
    assert rule.done(_candidates(["a", "a", "b", None]), remaining=0)
    confident = StopRule(1, "majority", 0.9)
    assert not confident.done(_candidates(["a", "a"]), remaining=60)  # P = 7/8 < 0.9
    assert confident.done(_candidates(["a", "a", "a"]), remaining=60)  # P = 15/16
    assert not confident.done(_candidates(["a", "b"]), remaining=60)  # no leader
    assert StopRule(1).done(_candidates(["a", "b"], [False, True]), remaining=5)
    assert not StopRule(1).done(_candidates(["a", "b"]), remaining=5)


@pytest.mark.parametrize("seed", range(5))
def test_stopping_on_an_exactly_settled_majority_keeps_the_full_runs_majority_answer(seed):
    rng = random.Random(seed)
    n = 12
    script = {}
    for p in range(40):  # each problem: a lopsided or an even answer distribution, some missing answers
        weights = rng.choice([[8, 1, 1, 2], [3, 3, 2, 4], [1, 0, 0, 0], [5, 4, 0, 3]])
        script[f"P{p}"] = [(f"x:{a}" if a else "x:", [-1.0])
                           for a in rng.choices(["a", "b", "c", None], weights=weights, k=n)]
    problems = [_Problem(pid, pid, "a") for pid in script]
    full = Search(_ScriptedModel(script), _FakeTask(), SAMPLER).best_of_n(problems, n=n)
    for round_size in (1, 3, 5):
        stopped = Search(_ScriptedModel(script), _FakeTask(), SAMPLER).best_of_n(
            problems, n=n, round_size=round_size, stop_on="majority")
        drawn = [len(r.candidates) for r in stopped.problems]
        assert [r.selected["majority"] for r in stopped.problems] == [r.selected["majority"] for r in full.problems]
        assert min(drawn) < n  # the lopsided problems stopped early
        for r, everything in zip(stopped.problems, full.problems):
            assert r.candidates == everything.candidates[: len(r.candidates)]
            assert len(r.candidates) == n or len(r.candidates) % round_size == 0
        # the full run's majority pick (earliest on ties; maj@N would give a tie half credit)
        picked = sum(r.selected["majority"] == "a" for r in full.problems) / len(problems)
        assert stopped.metrics["accuracy"]["majority"] == pytest.approx(picked)
        assert stopped.metrics["stop_on"] == "majority" and stopped.metrics["samples_drawn"]["total"] == sum(drawn)


def test_a_confident_majority_stops_sooner_than_an_exact_one():
    script = {"A": [("x:4", [-1.0])] * 6}
    problems = [_Problem("A", "pa", "4")]
    drawn = {}
    for confidence in (None, 0.9):
        result = Search(_ScriptedModel(script), _FakeTask(), SAMPLER).best_of_n(
            problems, n=6, round_size=1, stop_on="majority", stop_confidence=confidence)
        drawn[confidence] = len(result.problems[0].candidates)
        assert result.metrics["accuracy"]["majority"] == 1.0
    assert drawn == {None: 4, 0.9: 3}  # exact: 4 > 0 + 2; Beta: P(Bin(4, 1/2) >= 1) = 15/16 >= 0.9


def test_bad_rules_are_refused_before_any_sampling():
    model = _ScriptedModel({"A": [("x:1", [-1.0])]})
    search = Search(model, _FakeTask(), SAMPLER)
    for kwargs, needle in [({"stop_on": "vibes"}, "stop_on"), ({"stop_confidence": 0.9}, "stop_confidence"),
                           ({"stop_on": "majority", "stop_confidence": 0.3}, "stop_confidence")]:
        with pytest.raises(ValueError, match=needle):
            search.best_of_n([_Problem("A", "pa", "1")], n=1, round_size=1, **kwargs)
    with pytest.raises(ValueError, match="round_size"):
        search.best_of_n([_Problem("A", "pa", "1")], n=1, round_size=0)
    assert model.calls == 0


def test_a_filled_round_draws_more_per_open_problem_up_to_one_batch():
    rule = StopRule(2, fill=True)
    assert [rule.round_for(open_, 64) for open_ in (100, 64, 32, 20, 3, 1)] == [2, 2, 2, 3, 21, 64]
    assert StopRule(2).round_for(1, 64) == 2  # without fill: always round_size
    with pytest.raises(ValueError, match="stop_fill"):
        StopRule(1, fill="yes")
    assert StopRule(1).to_dict() == {"round_size": 1, "on": "verified", "confidence": None}  # saved runs resume
    assert StopRule(1, fill=True).to_dict()["fill"] is True


def test_filling_the_late_rounds_takes_fewer_calls_for_the_same_verdicts_and_draws():
    """Ten problems, batch 8: eight verify at their first sample, one at its tenth, one never.
    Filled rounds give the two stragglers 4 samples a round instead of 1: 5 calls instead of 13,
    no call over 8 rows, each problem's candidates the full run's first ones, the same verdicts."""
    n = 12
    script = {f"P{p}": [("v:1", [-1.0])] + [("x:2", [-1.0])] * (n - 1) for p in range(8)}
    script["P8"] = [("x:2", [-1.0])] * 9 + [("v:1", [-1.0])] + [("x:2", [-1.0])] * 2
    script["P9"] = [("x:2", [-1.0])] * n
    problems = [_Problem(pid, pid, "1") for pid in script]
    full = Search(_ScriptedModel(script), _FakeTask(), SAMPLER, batch_size=8).generate_problems(problems, n)
    runs = {}
    for fill in (False, True):
        model = _ScriptedModel(script)
        rows = []
        generate = model.generate
        model.generate = lambda prompts, sampler, *, seeds: (rows.append(len(seeds)), generate(prompts, sampler, seeds=seeds))[1]
        results = Search(model, _FakeTask(), SAMPLER, batch_size=8).until_verified(problems, n, 1, fill=fill)
        runs[fill] = (len(rows), max(rows), [len(r.candidates) for r in results])
        for r, everything in zip(results, full):
            assert r.candidates == everything.candidates[: len(r.candidates)]
        assert [any(c.verified for c in r.candidates) for r in results] == [True] * 9 + [False]
    assert runs[False] == (13, 8, [1] * 8 + [10, 12])
    assert runs[True] == (5, 8, [1] * 8 + [12, 12])  # P8 verified in the round that drew its 9th to 12th
