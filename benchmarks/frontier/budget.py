"""What a budget buys: per budget and model, the samples k it affords (by seconds per
sample, by measured latency, or with verify-and-stop and cascades priced exactly from the
accuracy runs) and the verified@k they reach. Pure arithmetic on a run's numbers."""
from __future__ import annotations

import functools
import math
from collections import Counter

from sdtt_search.search.metrics import verified_at_k

from ..cascade_pricing import cascade_best, first_verified, nothing, ordered_stop_options, stop_options


def round_seconds(search: dict) -> float:
    """Seconds per sample of a verify-and-stop round in the search run (one candidate of
    each of many problems per call); runs saved before it was timed: the search slice's."""
    return search.get("seconds_per_round_sample", search["seconds_per_sample"])


def affordable(budget: float, seconds_per_sample: float) -> int:
    """Samples a budget of ``budget`` seconds buys at ``seconds_per_sample`` (floor, float-safe)."""
    return math.floor(budget / seconds_per_sample + 1e-9)


def per_problem_at_k(per_problem: list[dict], k: int) -> list[float]:
    """Each problem's verified@k (0 for k = 0; k > N uses N): over its size-k subsets,
    or over its first k candidates when they are ``ordered`` (stratified first tokens)."""
    if k < 1:
        return [0.0] * len(per_problem)
    out = []
    for p in per_problem:
        m = min(k, len(p["verified"]))
        if p.get("ordered"):
            out.append(verified_at_k(p["verified"][:m], p["correct"][:m], m))
        else:
            out.append(verified_at_k(p["verified"], p["correct"], m))
    return out


def accuracy_at_budget(per_problem: list[dict], seconds_per_sample: float, budget: float) -> tuple[float, int, bool]:
    """(verified accuracy, affordable samples k, capped) at ``budget`` seconds per problem.

    k = floor(budget / seconds_per_sample); k = 0 scores 0; k > N uses N (capped).
    """
    k = affordable(budget, seconds_per_sample)
    if k < 1:
        return 0.0, 0, False
    n = len(per_problem[0]["verified"])
    return sum(per_problem_at_k(per_problem, k)) / len(per_problem), min(k, n), k > n


def curve(per_problem: list[dict], n: int) -> list[float]:
    """verified@k for k = 1..n, averaged over the problems."""
    return [sum(per_problem_at_k(per_problem, k)) / len(per_problem) for k in range(1, n + 1)]


def budget_grid(runs: dict, samples: int, points: int = 12) -> list[float]:
    """Geometric grid from the fastest single sample to the slowest model's N samples."""
    return _geometric(min(r["seconds_per_sample"] for r in runs.values()),
                      max(r["seconds_per_sample"] for r in runs.values()) * samples, points)


def _geometric(lo: float, hi: float, points: int) -> list[float]:
    """``points`` budgets from lo to hi, evenly spaced in log (just [lo] when hi <= lo)."""
    if hi <= lo:
        return [lo]
    return [lo * (hi / lo) ** (i / (points - 1)) for i in range(points)]


def frontier_points(runs: dict, budgets: list[float]) -> list[dict]:
    points = []
    for budget in budgets:
        point = {"budget_s": budget, "accuracy": {}, "k": {}, "capped": {}}
        for n, r in runs.items():
            point["accuracy"][n], point["k"][n], point["capped"][n] = accuracy_at_budget(
                r["per_problem"], r["seconds_per_sample"], budget)
        points.append(point)
    return points


def affordable_by_latency(latency: dict[int, float], budget: float) -> int:
    """The largest timed k whose latency fits ``budget`` seconds (0 if not even one sample)."""
    return max((k for k, t in latency.items() if t <= budget * (1 + 1e-9)), default=0)


def latency_grid(latencies: dict, points: int = 12) -> list[float]:
    """Geometric grid from the quickest single sample to the slowest model's N samples."""
    return _geometric(min(min(lat.values()) for lat in latencies.values()),
                      max(lat[max(lat)] for lat in latencies.values()), points)


def latency_points(runs: dict, latencies: dict, budgets: list[float]) -> list[dict]:
    """Per budget and model: the affordable k one problem at a time and its verified@k."""
    points = []
    for budget in budgets:
        point = {"budget_s": budget, "accuracy": {}, "k": {}, "capped": {}}
        for n, r in runs.items():
            k = affordable_by_latency({int(key): t for key, t in latencies[n].items()}, budget)
            point["k"][n], point["capped"][n] = k, False
            point["accuracy"][n] = sum(per_problem_at_k(r["per_problem"], k)) / len(r["per_problem"])
        points.append(point)
    return points


@functools.lru_cache(maxsize=None)
def none_verified(verified: int, n: int, m: int) -> float:
    """P(the first m of n samples in random order hold none of the ``verified`` ones)."""
    return math.comb(n - verified, m) / math.comb(n, m) if m <= n - verified else 0.0


def stop_rounds(per_problem: list[dict], r: int, k: int) -> float:
    """Expected rounds of r samples per problem (mean over problems) of verify-and-stop
    capped at k samples (k a multiple of r): round j + 1 runs when the first j r samples
    hold no verified one."""
    n = len(per_problem[0]["verified"])
    if per_problem[0].get("ordered"):  # candidates in drawing order: the rounds are known
        first = first_verified([p["verified"] for p in per_problem])
        return sum(min(int(f) // r + 1, k // r) for f in first) / len(per_problem)
    counts = Counter(sum(p["verified"]) for p in per_problem)
    return sum(c * sum(none_verified(v, n, j * r) for j in range(k // r)) for v, c in counts.items()) / len(per_problem)


def stop_points(runs: dict, latencies: dict, budgets: list[float]) -> list[dict]:
    """Per mean-latency budget and model: the verify-and-stop setting (rounds of r, at
    most k samples; r a timed batch, k a multiple of r up to N) with the best verified@k
    whose expected latency per problem fits (the cheaper on ties)."""
    options = {}
    for n, r in runs.items():
        lat = {int(key): t for key, t in latencies[n].items()}
        size = len(r["per_problem"][0]["verified"])
        acc = curve(r["per_problem"], size)
        options[n] = [(acc[k - 1], lat[rs] * stop_rounds(r["per_problem"], rs, k), rs, k)
                      for rs in sorted(lat) for k in range(rs, size + 1, rs)]
    points = []
    for budget in budgets:
        point = {"budget_s": budget, "accuracy": {}, "k": {}, "capped": {}, "round": {}, "mean_s": {}}
        for n, opts in options.items():
            fits = [o for o in opts if o[1] <= budget * (1 + 1e-9)]
            acc, cost, rs, k = max(fits, key=lambda o: (o[0], -o[1])) if fits else (0.0, 0.0, 0, 0)
            point["accuracy"][n], point["k"][n], point["capped"][n] = acc, k, False
            point["round"][n], point["mean_s"][n] = rs, cost
        points.append(point)
    return points


def verified_counts(per_problem: list[dict]) -> tuple[list[int], list[int]]:
    """Per problem: how many samples verified, and how many of those were correct."""
    return ([sum(p["verified"]) for p in per_problem],
            [sum(v and c for v, c in zip(p["verified"], p["correct"])) for p in per_problem])


def cascade_points(runs: dict, latencies: dict, budgets: list[float], students: list[str],
                   ars: list[str]) -> list[dict]:
    """Per mean budget and student: the best cascade of that student then an AR engine
    (``cascade_pricing``: the student in rounds of r1 until a sample verifies, at most k1;
    then, where none did, the AR engine in rounds of r2, at most k2, or nothing) whose
    expected cost per problem fits. ``latencies``: per model, seconds per round of r
    samples ({1: s/sample of a round} prices the search run). A model is never its own
    second stage (its one run would be counted twice as independent samples); a first
    stage with no other second prices verify-and-stop alone."""
    def options(name: str, zero: bool):
        per_problem = runs[name]["per_problem"]
        if per_problem[0].get("ordered"):
            return ordered_stop_options([p["verified"] for p in per_problem], [p["correct"] for p in per_problem],
                                        {int(r): t for r, t in latencies[name].items()}, zero=zero)
        verified, verified_correct = verified_counts(per_problem)
        return stop_options(verified, verified_correct, len(per_problem[0]["verified"]),
                            {int(r): t for r, t in latencies[name].items()}, zero=zero)

    seconds = {a: options(a, True) for a in ars}
    points = [{"budget_s": b, "accuracy": {}, "k": {}, "capped": {}, "mean_s": {}, "setting": {}, "per_problem": {}}
              for b in budgets]
    for s in students:
        first = options(s, False)
        best = [(None, None)] * len(budgets)
        others = [a for a in ars if a != s]
        for a in others or [None]:
            then = seconds[a] if a else nothing(first.cost.shape[1])
            for i, found in enumerate(cascade_best(first, then, budgets)):
                if found and (best[i][0] is None or (found["accuracy"], -found["mean_s"])
                              > (best[i][0]["accuracy"], -best[i][0]["mean_s"])):
                    best[i] = (found, a)
        for point, (found, a) in zip(points, best):
            if found is None:
                point["accuracy"][s], point["k"][s], point["mean_s"][s], point["setting"][s] = 0.0, 0, 0.0, None
                point["per_problem"][s] = [0.0] * len(runs[s]["per_problem"])
            else:
                point["accuracy"][s], point["mean_s"][s] = found["accuracy"], found["mean_s"]
                point["k"][s] = found["first"][1] + found["then"][1]
                point["setting"][s] = [*found["first"], a if found["then"][1] else None, *found["then"]]
                point["per_problem"][s] = found["per_problem"]
            point["capped"][s] = False
    return points


def family_points(cascades: list[dict]) -> list[dict]:
    """Per mean budget, the best of a family's cascades (``cascade_points`` with the
    family's models as both stages: its first stages, alone or followed by another
    member): {budget_s, model, accuracy, k, mean_s, setting, per_problem}."""
    out = []
    for point in cascades:
        best = max(point["accuracy"], key=lambda m: (point["accuracy"][m], -point["mean_s"][m]))
        out.append({"budget_s": point["budget_s"], "model": best,
                    **{key: point[key][best] for key in ("accuracy", "k", "mean_s", "setting", "per_problem")}})
    return out
