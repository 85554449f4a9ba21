"""Accuracy of best-of-N search as a function of the number of samples k.

Every metric is an expectation over size-k subsets of the n samples drawn for a
problem (never "the first k"), computed exactly where a closed form exists:

* pass@k: unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k);
* verified@k: pick uniformly among the verifier-accepted samples of the subset;
* confidence@k: pick the highest-scoring sample of the subset (order statistics);
* maj@k: majority vote over the subset's extracted answers, ties split evenly,
  averaged over random subsets (exact for k = 1 and k = n);
* temporal@k: the same with weighted votes (``weighted_vote_at_k``; temporal voting).
"""
from __future__ import annotations

from collections import Counter
from math import comb
from typing import Hashable, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that a random size-k subset of n samples holds a correct one.

    Args:
        n: samples drawn; c: correct samples among them; k: subset size (1..n).
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    # 1 - prod_{i=n-c+1}^{n} (1 - k / i), the numerically stable form of the ratio.
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def verified_at_k(verified: Sequence[bool], correct: Sequence[bool], k: int) -> float:
    """Expected accuracy when choosing uniformly among verified samples of a subset.

    A subset without a verified sample scores 0. By symmetry the chosen sample is
    correct with probability c_v / v whenever the subset holds >= 1 of the v
    verified samples (c_v of them correct).
    """
    n = len(verified)
    v = sum(bool(x) for x in verified)
    if v == 0:
        return 0.0
    c_v = sum(bool(x) and bool(y) for x, y in zip(verified, correct))
    return pass_at_k(n, v, k) * c_v / v


def top_score_at_k(scores: Sequence[float], correct: Sequence[bool], k: int) -> float:
    """Expected accuracy of picking the top-scored sample of a random size-k subset.

    The sample of descending rank i (0-based; ties broken by index) is the
    subset's top iff it is drawn and the i samples above it are not:
    probability C(n - 1 - i, k - 1) / C(n, k).
    """
    n = len(scores)
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n} k={k}")
    order = sorted(range(n), key=lambda i: (-scores[i], i))
    total = comb(n, k)
    return sum(comb(n - 1 - rank, k - 1) for rank, i in enumerate(order) if correct[i]) / total


def vote_credit(answers: Sequence[Hashable | None], reference_correct: dict) -> float:
    """Credit of a majority vote: 1 / (#tied winners) if a winner is correct.

    Args:
        answers: extracted answers (None = no answer, which does not vote).
        reference_correct: answer -> whether that answer is correct.
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return 0.0
    top = max(counts.values())
    winners = [a for a, c in counts.items() if c == top]
    return sum(bool(reference_correct.get(a, False)) for a in winners) / len(winners)


def majority_at_k(
    answers: Sequence[Hashable | None],
    correct_answers: dict,
    k: int,
    *,
    subsets: int = 256,
    seed: int = 0,
) -> float:
    """maj@k averaged over random size-k subsets (exact for k = 1 and k = n).

    Args:
        answers: one extracted answer per sample (None = unparsable).
        correct_answers: answer -> bool, whether that answer is correct.
        subsets: random subsets drawn for 1 < k < n (seeded, so deterministic).
    """
    n = len(answers)
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n} k={k}")
    if k == n:
        return vote_credit(answers, correct_answers)
    if k == 1:
        return sum(bool(correct_answers.get(a, False)) for a in answers if a is not None) / n
    # All subsets at once: the k smallest of n uniforms per row index a uniform k-subset.
    classes = list(dict.fromkeys(a for a in answers if a is not None))
    if not classes:
        return 0.0
    code = {a: i for i, a in enumerate(classes)}
    codes = np.array([code[a] if a is not None else len(classes) for a in answers])  # None: its own class, no vote
    picks = codes[np.argpartition(np.random.default_rng(seed).random((subsets, n)), k - 1, axis=1)[:, :k]]
    counts = np.zeros((subsets, len(classes) + 1), dtype=np.int64)
    np.add.at(counts, (np.arange(subsets)[:, None], picks), 1)
    votes = counts[:, :-1]
    top = votes.max(1, keepdims=True)
    winners = (votes == top) & (top > 0)
    right = np.array([bool(correct_answers.get(a, False)) for a in classes])
    credit = (winners & right).sum(1) / np.maximum(winners.sum(1), 1)
    return float(credit.mean())


def weighted_vote_credit(votes: Sequence[dict], correct_answers: dict) -> float:
    """Credit of a weighted vote: each sample's ``{answer: weight}`` summed; 1 / (#tied
    winners) for each correct winner (weights equal within 1e-12 tie)."""
    total: dict = {}
    for sample in votes:
        for answer, weight in sample.items():
            total[answer] = total.get(answer, 0.0) + weight
    if not total:
        return 0.0
    top = max(total.values())
    winners = [a for a, w in total.items() if w >= top - 1e-12]
    return sum(bool(correct_answers.get(a, False)) for a in winners) / len(winners)


def weighted_vote_at_k(votes: Sequence[dict], correct_answers: dict, k: int, *, subsets: int = 256,
                       seed: int = 0) -> float:
    """A weighted vote's accuracy over size-k subsets of the n samples: exact for k = 1 (each
    sample's own vote) and k = n, else averaged over ``subsets`` random subsets (seeded).

    Args:
        votes: per sample, ``{answer: weight}`` (``select.temporal_votes``).
        correct_answers: answer -> bool.
    """
    n = len(votes)
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n} k={k}")
    if k == n:
        return weighted_vote_credit(votes, correct_answers)
    if k == 1:
        return sum(weighted_vote_credit([v], correct_answers) for v in votes) / n
    rng = np.random.default_rng(seed)
    picks = np.argpartition(rng.random((subsets, n)), k - 1, axis=1)[:, :k]
    return float(np.mean([weighted_vote_credit([votes[i] for i in row], correct_answers) for row in picks]))


def ks_up_to(n: int) -> list[int]:
    """1, 2, 4, ..., and n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]
