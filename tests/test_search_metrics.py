"""pass@k, maj@k, verified@k and confidence@k against hand-computed values."""
from __future__ import annotations

import itertools
from math import comb

import pytest

from sdtt_search.search.metrics import (
    ks_up_to, majority_at_k, pass_at_k, top_score_at_k, verified_at_k, vote_credit,
)


@pytest.mark.parametrize("n,c,k,expected", [
    (1, 1, 1, 1.0), (1, 0, 1, 0.0), (10, 1, 1, 0.1), (10, 1, 10, 1.0),
    (4, 2, 2, 1 - 1 / 6),  # 1 - C(2,2)/C(4,2)
    (5, 2, 3, 1 - 1 / 10),  # 1 - C(3,3)/C(5,3)
    (5, 3, 3, 1.0),  # n - c < k: every subset holds a correct one
    (200, 13, 10, 1 - comb(187, 10) / comb(200, 10)),
])
def test_pass_at_k_known_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12)


def test_pass_at_k_equals_subset_enumeration():
    correct = [1, 0, 0, 1, 0, 0, 0]
    n = len(correct)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(range(n), k))
        brute = sum(any(correct[i] for i in s) for s in subsets) / len(subsets)
        assert pass_at_k(n, sum(correct), k) == pytest.approx(brute)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_verified_and_top_score_equal_subset_enumeration():
    verified = [True, False, True, True, False, False]
    correct = [True, True, False, True, False, False]
    scores = [0.1, 0.9, 0.5, 0.5, -1.0, 0.2]
    n = len(correct)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(range(n), k))
        brute_v = 0.0
        brute_t = 0.0
        for s in subsets:
            ver = [i for i in s if verified[i]]
            brute_v += sum(correct[i] for i in ver) / len(ver) if ver else 0.0
            top = min(s, key=lambda i: (-scores[i], i))
            brute_t += correct[top]
        assert verified_at_k(verified, correct, k) == pytest.approx(brute_v / len(subsets))
        assert top_score_at_k(scores, correct, k) == pytest.approx(brute_t / len(subsets))


def test_vote_credit_splits_ties_and_ignores_none():
    ok = {"18": True, "7": False}
    assert vote_credit(["18", "7", "18", None], ok) == 1.0
    assert vote_credit(["18", "7"], ok) == 0.5
    assert vote_credit([None, None], ok) == 0.0
    assert vote_credit(["7", "7", "18"], ok) == 0.0


def test_majority_at_k_is_an_average_over_subsets_not_the_first_k():
    answers = ["7", "7", "18", "18", "18"]
    ok = {"18": True, "7": False}
    # The first two samples are both wrong, but a random pair often holds an 18.
    subsets = list(itertools.combinations(answers, 2))
    exact = sum(vote_credit(list(s), ok) for s in subsets) / len(subsets)
    # 3 of 10 pairs are (18, 18) -> 1, 6 are mixed ties -> 1/2, 1 is (7, 7) -> 0.
    assert exact == pytest.approx(0.6)
    assert majority_at_k(answers, ok, 2, subsets=4000, seed=1) == pytest.approx(exact, abs=0.03)
    assert majority_at_k(answers, ok, 1) == pytest.approx(0.6)
    assert majority_at_k(answers, ok, 5) == 1.0
    assert majority_at_k(answers, ok, 3, seed=3) == majority_at_k(answers, ok, 3, seed=3)


def test_ks_up_to():
    assert ks_up_to(1) == [1]
    assert ks_up_to(8) == [1, 2, 4, 8]
    assert ks_up_to(10) == [1, 2, 4, 8, 10]
