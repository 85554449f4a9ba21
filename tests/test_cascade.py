"""Cascades (``search.cascade``): a later stage sees only what the earlier ones left unverified."""
from __future__ import annotations

import pytest

from sdtt_search import Cascade, Search, Stage
from sdtt_search.search.report import format_summary
from test_search_engine import SAMPLER, SCRIPT_STOP, STOP_PROBLEMS, _FakeTask, _Problem, _ScriptedModel

# Stage 2's script: C (reference 2) verifies at its second sample; A and B must never reach it.
SCRIPT_AR = {"C": [("x:9", [-0.3]), ("v:2", [-0.2]), ("v:2", [-0.1]), ("x:9", [-0.1])]}


class _Recording(_ScriptedModel):
    """A scripted model that also records the seeds it was asked for."""

    def __init__(self, script, seed=0):
        super().__init__(script, seed)
        self.seeds = []

    def generate(self, prompts, sampler, *, seeds):
        self.seeds += list(seeds)
        return super().generate(prompts, sampler, seeds=seeds)


def _cascade(student_samples=2, student_round=1, ar_round=1, batch_size=256):
    student, ar = _Recording(SCRIPT_STOP), _Recording(SCRIPT_AR, seed=1)
    task = _FakeTask()
    return student, ar, Cascade([
        Stage(Search(student, task, SAMPLER, batch_size=batch_size), samples=student_samples, round_size=student_round),
        Stage(Search(ar, task, SAMPLER, batch_size=batch_size, seed=1), samples=4, round_size=ar_round),
    ])


def test_a_later_stage_draws_only_for_the_problems_left_unverified():
    student, ar, cascade = _cascade()
    result = cascade.best_of_n(STOP_PROBLEMS)
    a, b, c = result.problems
    # A verifies at its first sample, B at its second; C's two student samples fail, the AR's second verifies
    assert [r.stage_samples for r in result.problems] == [[1, 0], [2, 0], [2, 2]]
    assert [x.text for x in c.candidates] == ["x:1", "x:1", "x:9", "v:2"]
    assert len(ar.seeds) == 2 and student.calls == 2 and ar.calls == 2  # rounds {A,B,C},{B,C}; then {C},{C}
    assert a.selected["verifier"] == "7" and b.selected["verifier"] == "5" and c.selected["verifier"] == "2"
    m = result.metrics
    assert m["accuracy"]["verified"] == 1.0 and m["solved_share"] == 1.0
    assert m["samples_drawn"] == {"mean": 7 / 3, "max": 4, "total": 7}
    first, second = m["stages"]
    assert (first["reached"], first["accepted"], first["samples_drawn_mean"]) == (1.0, pytest.approx(2 / 3), pytest.approx(5 / 3))
    assert (second["reached"], second["accepted"], second["samples_drawn_mean"]) == (
        pytest.approx(1 / 3), pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert "| 2 |" in format_summary(m) and "verified accuracy 1.000" in format_summary(m)


def test_each_stage_holds_exactly_its_own_verify_and_stop_candidates():
    _, _, cascade = _cascade(student_samples=4, student_round=2, ar_round=4)
    merged = cascade.run(STOP_PROBLEMS)
    alone = Search(_ScriptedModel(SCRIPT_STOP), _FakeTask(), SAMPLER).until_verified(STOP_PROBLEMS, 4, 2)
    for r, own in zip(merged, alone):
        assert r.candidates[: r.stage_samples[0]] == own.candidates
    c = merged[2]
    assert c.stage_samples == [4, 4]  # one AR round of 4
    assert [x.text for x in c.candidates[4:]] == [t for t, _ in SCRIPT_AR["C"]]
    assert c.seconds == pytest.approx(sum(c.stage_seconds))


@pytest.mark.parametrize("batch_size", [1, 2])
def test_streaming_in_chunks_gives_the_same_results(batch_size):
    _, _, whole = _cascade()
    _, _, chunked = _cascade(batch_size=batch_size)
    assert chunked.problems_per_batch() == batch_size
    got = list(chunked.iter_results(STOP_PROBLEMS))
    want = whole.run(STOP_PROBLEMS)
    assert [(r.candidates, r.stage_samples) for r in got] == [(r.candidates, r.stage_samples) for r in want]


def test_bad_cascades_are_refused_with_one_line_errors():
    model, task = _ScriptedModel(SCRIPT_STOP), _FakeTask()
    search = Search(model, task, SAMPLER)
    with pytest.raises(ValueError, match="at least one stage"):
        Cascade([])
    with pytest.raises(ValueError, match="samples"):
        Stage(search, samples=0, round_size=1)
    with pytest.raises(ValueError, match="round_size"):
        Stage(search, samples=4, round_size=0)
    with pytest.raises(ValueError, match="same model and seed"):
        Cascade([Stage(search, 4, 1), Stage(Search(model, task, SAMPLER), 4, 1)])
    Cascade([Stage(search, 4, 1), Stage(Search(model, task, SAMPLER, seed=1), 4, 1)])  # another seed is fine

    class _NoVerifier(_FakeTask):
        has_verifier = False
        name = "plain"

    with pytest.raises(ValueError, match="no verifier"):
        Cascade([Stage(Search(model, _NoVerifier(), SAMPLER), 4, 1)])
    with pytest.raises(ValueError, match="same task"):
        Cascade([Stage(search, 4, 1), Stage(Search(_ScriptedModel({}), _NoVerifier(), SAMPLER), 4, 1)])


def test_one_stage_is_verify_and_stop():
    problems = [*STOP_PROBLEMS, _Problem("D", "pd", "0")]
    script = {**SCRIPT_STOP, "D": [("v:0", [-1.0])] * 4}
    cascade = Cascade([Stage(Search(_ScriptedModel(script), _FakeTask(), SAMPLER), 4, 2)])
    alone = Search(_ScriptedModel(script), _FakeTask(), SAMPLER).best_of_n(problems, n=4, round_size=2)
    result = cascade.best_of_n(problems)
    assert [r.candidates for r in result.problems] == [r.candidates for r in alone.problems]
    assert result.metrics["accuracy"] == alone.metrics["accuracy"]


class _PlainTask(_FakeTask):
    """The fake task without a verifier (as GSM8K): only the answers' agreement can say when to pass on."""

    name = "fake"
    has_verifier = False

    def verify(self, problem, text):
        return None


def test_a_majority_cascade_passes_on_the_problems_whose_answers_disagree_and_answers_from_the_last_stage():
    script = {"X": [("x:4", [-1.0])] * 4,  # agrees: P(leader beats runner-up) = 7/8 after two samples
              "Y": [("x:1", [-1.0]), ("x:2", [-1.0]), ("x:1", [-1.0]), ("x:3", [-1.0])]}  # never sure (<= 11/16)
    ar_script = {"Y": [("x:5", [-1.0])] * 4}
    problems = [_Problem("X", "px", "4"), _Problem("Y", "py", "5")]
    student, ar, task = _Recording(script), _Recording(ar_script, seed=1), _PlainTask()
    cascade = Cascade([Stage(Search(student, task, SAMPLER), 4, 1, "majority", 0.8),
                       Stage(Search(ar, task, SAMPLER, seed=1), 4, 1, "majority", 0.8)])
    result = cascade.best_of_n(problems)
    x, y = result.problems
    assert x.stage_samples == [2, 0] and y.stage_samples == [4, 2]
    # Y's candidates tie 1:2 against 5:2 over both stages; its answer is the AR stage's settled "5"
    assert x.selected["majority"] == "4" and y.selected["majority"] == "5"
    m = result.metrics
    assert m["accuracy"] == {"majority": 1.0} and "verified" not in m["accuracy"]
    assert [(s["reached"], s["accepted"]) for s in m["stages"]] == [(1.0, 0.5), (0.5, 0.5)]
    assert [s["on"] for s in m["stages"]] == ["majority", "majority"] and m["stages"][0]["confidence"] == 0.8
    assert "majority accuracy 1.000" in format_summary(m) and "majority >= 0.8" in format_summary(m)


def test_a_cascade_on_the_majority_needs_a_confidence_and_one_on_verified_a_verifier():
    search = Search(_ScriptedModel({}), _PlainTask(), SAMPLER)
    with pytest.raises(ValueError, match="confidence"):
        Stage(search, 4, 1, "majority")
    with pytest.raises(ValueError, match="no verifier"):
        Cascade([Stage(search, 4, 1)])
    Cascade([Stage(search, 4, 1, "majority", 0.9)])
