"""Price a cascade (``sdtt_search.search.cascade``) exactly from two models' accuracy runs.

Stage 1 draws rounds of r1 samples of a problem until one verifies, at most k1; only if
none did, stage 2 draws rounds of r2, at most k2. For a problem of which v of the N
measured samples verified (c of them correct), the samples being i.i.d. so that the
measured ones in random order are a fair sampling sequence:

    none(m)      = C(N - v, m) / C(N, m)       the first m samples hold no verified one
    rounds(r, k) = sum_{j < k / r} none(j r)   expected rounds of verify-and-stop
    acc(k)       = (1 - none(k)) c / v         verified@k (a verified pick is correct w.p. c / v)

and, the two models' samples being independent,

    cost     = L1(r1) rounds1(r1, k1) + none1(k1) L2(r2) rounds2(r2, k2)
    accuracy = acc1(k1) + none1(k1) acc2(k2)

with L(r) the seconds a round of r samples takes (timed one problem at a time, or r times
a sample's cost in the search run). The mean over problems of every (stage 1, stage 2)
setting pair is two matrix products.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sdtt_search.search.metrics import verified_at_k


@dataclass
class StopOptions:
    """Every verify-and-stop setting of one model, per problem.

    Attributes:
        settings: (r, k) per row: rounds of r, at most k samples (k a multiple of r).
        cost: [S, P] expected seconds per problem.
        none: [S, P] probability that no sample within k verifies.
        accuracy: [S, P] verified@k per problem.
    """

    settings: list[tuple[int, int]]
    cost: np.ndarray
    none: np.ndarray
    accuracy: np.ndarray


def none_table(n: int) -> np.ndarray:
    """[n + 1, n + 1]: entry (v, m) = P(the first m of n samples in random order hold none of v verified ones)."""
    table = np.zeros((n + 1, n + 1))
    for v in range(n + 1):
        for m in range(n - v + 1):
            table[v, m] = math.comb(n - v, m) / math.comb(n, m)
    return table


def stop_options(verified: list[int], verified_correct: list[int], n: int, latency: dict[int, float],
                 zero: bool = False) -> StopOptions:
    """All settings (r, k) of one model: r a timed round size (``latency``: seconds per round
    of r samples), k = r, 2r, ... <= n. ``verified`` / ``verified_correct``: per problem, how
    many of its n samples verified and how many of those were correct. ``zero`` adds the
    setting (0, 0) that draws nothing (a stage that is skipped)."""
    table = none_table(n)
    v = np.asarray(verified)
    ratio = np.where(v > 0, np.asarray(verified_correct) / np.maximum(v, 1), 0.0)
    return _options(len(v), zero, (((r, k), latency[r] * sum(table[v, j * r] for j in range(k // r)), table[v, k],
                                    (1 - table[v, k]) * ratio)
                                   for r in sorted(latency) for k in range(r, n + 1, r)))


def first_verified(verified: list[list[bool]]) -> np.ndarray:
    """[P] per problem the index of its first verified candidate in drawing order (n: none)."""
    return np.array([next((i for i, v in enumerate(row) if v), len(row)) for row in verified])


def ordered_stop_options(verified: list[list[bool]], correct: list[list[bool]], latency: dict[int, float],
                         zero: bool = False) -> StopOptions:
    """``stop_options`` of candidates in the order a search draws them (stratified first
    tokens, ``SamplerConfig.stratify``: candidate i is not exchangeable with candidate
    j, so no averaging over orders): per problem, round j + 1 runs when the first j r
    candidates hold no verified one, and the pick is uniform among the verified ones of
    the rounds drawn."""
    n = len(verified[0])
    first = first_verified(verified)

    def setting(r: int, k: int):
        rounds = np.minimum(first // r + 1, k // r)
        drawn = rounds * r  # the verifier picks among the verified ones of the rounds drawn
        accuracy = [verified_at_k(vs[:m], cs[:m], m) for vs, cs, m in zip(verified, correct, drawn)]
        return (r, k), latency[r] * rounds, (first >= k).astype(float), np.array(accuracy)

    return _options(len(verified), zero, (setting(r, k) for r in sorted(latency) for k in range(r, n + 1, r)))


def _options(problems: int, zero: bool, rows) -> StopOptions:
    """``StopOptions`` from rows (setting, cost [P], none [P], accuracy [P]), after the
    setting (0, 0) that draws nothing when ``zero``."""
    skip = [((0, 0), np.zeros(problems), np.ones(problems), np.zeros(problems))] if zero else []
    settings, cost, none, accuracy = zip(*(skip + list(rows)))
    return StopOptions(list(settings), np.array(cost, dtype=float), np.array(none, dtype=float),
                       np.array(accuracy, dtype=float))


def nothing(problems: int) -> StopOptions:
    """Only the setting (0, 0) that draws nothing: a second stage that never runs, so that
    a cascade over it prices its first stage alone."""
    return _options(problems, True, [])


def cascade_table(first: StopOptions, then: StopOptions) -> tuple[np.ndarray, np.ndarray]:
    """([S1, S2] mean cost per problem, [S1, S2] mean accuracy) of every setting pair."""
    problems = first.cost.shape[1]
    mean_cost = first.cost.mean(1)[:, None] + first.none @ then.cost.T / problems
    mean_acc = first.accuracy.mean(1)[:, None] + first.none @ then.accuracy.T / problems
    return mean_cost, mean_acc


def cascade_best(first: StopOptions, then: StopOptions, budgets: list[float]) -> list[dict | None]:
    """Per mean budget (seconds per problem): the most accurate setting pair whose mean
    cost fits (the cheaper on ties), as {accuracy, mean_s, first (r, k), then (r, k),
    per_problem [P]}; None where nothing fits. ``then`` should hold the zero setting so
    that stage 1 alone is a candidate."""
    mean_cost, mean_acc = cascade_table(first, then)
    out = []
    for budget in budgets:
        fits = mean_cost <= budget * (1 + 1e-9)
        if not fits.any():
            out.append(None)
            continue
        acc = np.where(fits, mean_acc, -1.0)
        best = acc.max()
        ties = fits & (acc >= best - 1e-12)
        i, j = np.unravel_index(np.argmin(np.where(ties, mean_cost, np.inf)), mean_cost.shape)
        out.append({"accuracy": float(mean_acc[i, j]), "mean_s": float(mean_cost[i, j]),
                    "first": first.settings[i], "then": then.settings[j],
                    "per_problem": (first.accuracy[i] + first.none[i] * then.accuracy[j]).tolist()})
    return out
