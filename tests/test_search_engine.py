"""``Search.best_of_n``: candidates, selections and metrics, on a tiny random model
and on a scripted fake model whose metrics are computed by hand."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from sdtt_search.diffusion import SamplerConfig
from sdtt_search.interface import Completions
from sdtt_search.search.engine import Search, candidate_seed
from search_fixtures import countdown3, tiny_ckpt, tiny_model  # noqa: F401 - pytest fixtures

N = 4
SAMPLER = SamplerConfig(steps=4, temperature=1.0)


@pytest.fixture(scope="module")
def problems(countdown3):  # noqa: F811
    return countdown3.problems(limit=6)


def _texts(result):
    return [[c.text for c in r.candidates] for r in result.problems]


# ---------------------------------------------------------------- tiny model
def test_best_of_n_shapes_selections_and_metrics(tiny_model, countdown3, problems):  # noqa: F811
    result = Search(tiny_model, countdown3, SAMPLER).best_of_n(problems, n=N)
    assert [r.id for r in result.problems] == [p.id for p in problems]
    for r, p in zip(result.problems, problems):
        assert r.prompt == countdown3.format_prompt(p) and r.reference == p.reference
        assert len(r.candidates) == N
        for c in r.candidates:
            assert isinstance(c.text, str)
            assert c.answer == countdown3.extract_answer(c.text)
            assert c.correct == countdown3.is_correct(p, c.text)
            assert c.verified == countdown3.verify(p, c.text)
            assert c.score < 0 and c.reward is None
        assert set(r.selected) == {"majority", "verifier", "confidence"}
        assert r.tokens > 0 and r.positions == N * 12 and r.nfe > 0
    acc = result.metrics["accuracy"]
    for kind in ("pass", "maj", "verified", "confidence"):
        assert {f"{kind}@{k}" for k in (1, 2, 4)} <= set(acc)
    assert all(0.0 <= v <= 1.0 for v in acc.values())
    tp = result.metrics["throughput"]
    assert result.metrics["problems"] == len(problems) and result.metrics["samples"] == N
    assert tp["samples_per_s"] > 0 and tp["tokens_per_s"] > 0
    # all 6 problems x 4 samples share one batch: forward passes are the batch's network calls
    assert 1 <= tp["forward_passes"] <= SAMPLER.steps + 1
    # samples do vary
    assert len({c.text for r in result.problems for c in r.candidates}) > len(problems)


def test_results_do_not_depend_on_batch_packing(tiny_model, countdown3, problems):  # noqa: F811
    some = problems[:3]
    one = Search(tiny_model, countdown3, SAMPLER, batch_size=1).best_of_n(some, n=N)
    packed = Search(tiny_model, countdown3, SAMPLER, batch_size=64).best_of_n(some, n=N)
    odd = Search(tiny_model, countdown3, SAMPLER, batch_size=3).best_of_n(some, n=N)  # a problem over 2 batches
    assert _texts(one) == _texts(packed) == _texts(odd)
    for a, b in zip(one.problems, packed.problems):
        assert [c.score for c in a.candidates] == pytest.approx([c.score for c in b.candidates], abs=1e-5)
        assert a.selected == b.selected


def test_seeds_change_candidates(tiny_model, countdown3, problems):  # noqa: F811
    a = Search(tiny_model, countdown3, SAMPLER, seed=0).best_of_n(problems[:2], n=N)
    b = Search(tiny_model, countdown3, SAMPLER, seed=1).best_of_n(problems[:2], n=N)
    again = Search(tiny_model, countdown3, SAMPLER, seed=0).best_of_n(problems[:2], n=N)
    assert _texts(a) != _texts(b)
    assert _texts(a) == _texts(again)


def test_reward_selector_picks_highest_reward(tiny_model, countdown3, problems):  # noqa: F811
    def reward(prompt: str, text: str) -> float:  # prefers completions full of operators
        return sum(ch in "+-*/=" for ch in text) - 0.01 * len(text)

    result = Search(tiny_model, countdown3, SAMPLER, reward_fn=reward).best_of_n(problems, n=N)
    for r in result.problems:
        assert set(r.selected) == {"majority", "verifier", "confidence", "reward"}
        rewards = [c.reward for c in r.candidates]
        assert rewards == [reward(r.prompt, c.text) for c in r.candidates]
        assert r.selected["reward"] == r.candidates[rewards.index(max(rewards))].answer
    assert f"reward@{N}" in result.metrics["accuracy"]


def test_bad_arguments(tiny_model, countdown3, problems):  # noqa: F811
    with pytest.raises(ValueError, match="batch_size"):
        Search(tiny_model, countdown3, SAMPLER, batch_size=0)
    with pytest.raises(ValueError, match="samples"):
        Search(tiny_model, countdown3, SAMPLER).best_of_n(problems, n=0)


# ---------------------------------------------------------------- scripted fake
@dataclass
class _Problem:
    id: str
    prompt: str
    reference: str


class _FakeTask:
    """Answer = text after ':'; correct iff it equals the reference; verified iff the text starts with 'v'."""

    name = "fake"
    has_verifier = True

    def format_prompt(self, problem):
        return problem.prompt

    def extract_answer(self, text):
        answer = text.partition(":")[2]
        return answer or None

    def is_correct(self, problem, text):
        return self.extract_answer(text) == problem.reference

    def verify(self, problem, text):
        return text.startswith("v")


class _ScriptedModel:
    """Returns script[problem id][i] = (text, logprobs) for candidate i, found from its seed."""

    def __init__(self, script: dict, seed: int = 0):
        self.by_seed = {candidate_seed(seed, pid, i): row for pid, rows in script.items() for i, row in enumerate(rows)}
        self.calls = 0

    def generate(self, prompts, sampler, *, seeds):
        self.calls += 1
        rows = [self.by_seed[s] for s in seeds]
        return Completions(texts=[t for t, _ in rows], logprobs=[list(lp) for _, lp in rows], nfe=3, positions=5)


SCRIPT = {
    # A (reference 7): correct=[1,0,0,0], verified=[1,0,0,1], scores [-0.1,-0.5,-0.2,-2.0], answers 7,3,3,3
    "A": [("v:7", [-0.1]), ("x:3", [-0.5]), ("x:3", [-0.2, -0.2]), ("v:3", [-1.0, -3.0])],
    # B (reference 5): correct=[1,1,0,1], verified=[0,1,0,1], scores [-1.0,-0.3,-0.1,-0.4], answers 5,5,None,5
    "B": [("x:5", [-1.0]), ("v:5", [-0.3]), ("x:", [-0.1]), ("v:5", [-0.4])],
}
FAKE_PROBLEMS = [_Problem("A", "pa", "7"), _Problem("B", "pb", "5")]

# Per problem by hand (subsets of the 4 samples), then averaged over A and B:
#   pass@1: A 1/4, B 3/4; pass@2: A 1 - C(3,2)/C(4,2) = 1/2, B 1; pass@4: 1, 1
#   maj@1: A 1/4, B 3/4; maj@2: A 3 of 6 pairs tie 7-3 (credit 1/2) -> 1/4, B every pair votes 5 -> 1;
#          maj@4: A 3 wins -> 0, B 5 wins -> 1
#   verified@k = P(subset has a verified one) * (correct verified / verified):
#          A: 1/4, 5/6 * 1/2, 1/2; B: 1/2, 5/6, 1
#   confidence@k (top-scored of the subset): A's top (-0.1) is correct: 1/4, 1/2, 1;
#          B's top (-0.1, "x:") is wrong: 3/4, 1 - 1/2, 0
EXPECTED = {
    "pass@1": 0.5, "pass@2": 0.75, "pass@4": 1.0,
    "maj@1": 0.5, "maj@4": 0.5,
    "verified@1": 0.375, "verified@2": (5 / 12 + 5 / 6) / 2, "verified@4": 0.75,
    "confidence@1": 0.5, "confidence@2": 0.5, "confidence@4": 0.5,
}
EXPECTED_MAJ2 = (1 / 4 + 1) / 2  # maj@2 is averaged over 256 random pairs, so only close to this


@pytest.mark.parametrize("batch_size", [1, 4, 256])
def test_fake_model_metrics_equal_hand_computed(batch_size):
    model = _ScriptedModel(SCRIPT)
    result = Search(model, _FakeTask(), SAMPLER, batch_size=batch_size).best_of_n(FAKE_PROBLEMS, n=4)
    acc = result.metrics["accuracy"]
    assert set(acc) == set(EXPECTED) | {"maj@2"}
    for key, value in EXPECTED.items():
        assert acc[key] == pytest.approx(value, abs=1e-12), key
    assert acc["maj@2"] == pytest.approx(EXPECTED_MAJ2, abs=0.06)

    a, b = result.problems
    assert [c.score for c in a.candidates] == pytest.approx([-0.1, -0.5, -0.2, -2.0])
    assert [c.answer for c in b.candidates] == ["5", "5", None, "5"]
    assert [c.verified for c in a.candidates] == [True, False, False, True]
    assert a.selected == {"majority": "3", "verifier": "7", "confidence": "7"}
    assert b.selected == {"majority": "5", "verifier": "5", "confidence": None}
    assert a.tokens == 6 and b.tokens == 4 and a.positions == b.positions == 20
    # network calls: 3 per generate() call, however problems were packed
    assert model.calls == {1: 8, 4: 2, 256: 1}[batch_size]
    assert result.metrics["throughput"]["forward_passes"] == 3 * model.calls


SCRIPT_STOP = {**SCRIPT, "C": [("x:1", [-1.0])] * 4}  # C (reference 2): nothing verifies
STOP_PROBLEMS = [*FAKE_PROBLEMS, _Problem("C", "pc", "2")]


@pytest.mark.parametrize("round_size,drawn,calls", [
    (1, [1, 2, 4], 4),  # A verifies at 0, B at 1, C never: rounds {A,B,C}, {B,C}, {C}, {C}
    (2, [2, 2, 4], 2),
    (3, [3, 3, 4], 2),  # C's last round is the one sample left
    (4, [4, 4, 4], 1),  # one round: the full best-of-N
])
def test_verify_and_stop_draws_rounds_until_a_candidate_verifies(round_size, drawn, calls):
    model = _ScriptedModel(SCRIPT_STOP)
    result = Search(model, _FakeTask(), SAMPLER, batch_size=256).best_of_n(STOP_PROBLEMS, n=4, round_size=round_size)
    assert [len(r.candidates) for r in result.problems] == drawn and model.calls == calls
    full = Search(_ScriptedModel(SCRIPT_STOP), _FakeTask(), SAMPLER).best_of_n(STOP_PROBLEMS, n=4)
    for stopped, everything in zip(result.problems, full.problems):  # the full run's first candidates
        assert stopped.candidates == everything.candidates[: len(stopped.candidates)]
    a, b, c = result.problems
    assert a.selected["verifier"] == "7" and b.selected["verifier"] == "5" and c.selected["verifier"] is None
    m = result.metrics
    # A's verified pick: round 1 "v:7" (correct); with 4 samples the best-scored verified is still "v:7"
    assert m["accuracy"]["verified"] == pytest.approx(2 / 3) and m["solved_share"] == pytest.approx(2 / 3)
    assert m["samples_drawn"] == {"mean": pytest.approx(sum(drawn) / 3), "max": 4, "total": sum(drawn)}
    assert m["throughput"]["forward_passes"] == 3 * calls and m["round_size"] == round_size


def test_verify_and_stop_needs_a_verifier_and_positive_rounds():
    task = _FakeTask()
    task.has_verifier = False
    with pytest.raises(ValueError, match="no verifier"):
        Search(_ScriptedModel(SCRIPT), task, SAMPLER).until_verified(FAKE_PROBLEMS, 4, 1)
    with pytest.raises(ValueError, match="round_size"):
        Search(_ScriptedModel(SCRIPT), _FakeTask(), SAMPLER).until_verified(FAKE_PROBLEMS, 4, 0)


def test_fake_model_reward_hook():
    rewards = {("pa", "x:3"): 2.0, ("pa", "v:7"): 1.0, ("pb", "x:"): 3.0}
    result = Search(_ScriptedModel(SCRIPT), _FakeTask(), SAMPLER,
                    reward_fn=lambda prompt, text: rewards.get((prompt, text), 0.0)).best_of_n(FAKE_PROBLEMS, n=4)
    a, b = result.problems
    assert a.selected["reward"] == "3" and b.selected["reward"] is None
    assert [c.reward for c in a.candidates] == [1.0, 2.0, 2.0, 0.0]
    # reward@4: A's top reward "x:3" is wrong, B's top "x:" is wrong
    assert result.metrics["accuracy"]["reward@4"] == 0.0
