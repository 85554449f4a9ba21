"""Aggregate per-problem results into metrics.json, a summary table and a plot."""
from __future__ import annotations

from statistics import mean
from typing import Sequence

from .metrics import ks_up_to, majority_at_k, pass_at_k, top_score_at_k, verified_at_k, weighted_vote_at_k
from .results import ProblemResult
from .select import temporal_votes
from .stages import accepts, stage_candidates
from .stopping import StopRule


def accuracy_curves(results: Sequence[ProblemResult], n: int, *, has_verifier: bool,
                    first_k: bool = False) -> dict[str, float]:
    """pass@k, maj@k, verified@k (if the task has a verifier) and confidence@k, for
    k = 1, 2, 4, ..., n, each averaged over problems: over the size-k subsets of a
    problem's n candidates, or with ``first_k`` over its first k candidates only (what
    a k-candidate search draws when the candidates are not exchangeable: stratified
    first tokens, ``SamplerConfig.stratify``, spread the first k over the model's
    choices, and a random subset of them is not spread so)."""
    acc: dict[str, float] = {}
    if not results:
        return acc
    kinds = ["pass", "maj"] + (["verified"] if has_verifier else []) + ["confidence"]
    if all(c.trail is not None for r in results for c in r.candidates):  # Search(temporal=True)
        kinds.append("temporal")
    for kind in kinds:
        for k in ks_up_to(n):
            # first k: each problem's first k candidates, all of them scored (size k of k: exact)
            rows = [(r, r.candidates[:k]) for r in results] if first_k else [(r, r.candidates) for r in results]
            acc[f"{kind}@{k}"] = mean(_at_k(kind, r, candidates, k) for r, candidates in rows)
    if all(c.reward is not None for r in results for c in r.candidates):
        acc[f"reward@{n}"] = mean(
            top_score_at_k([c.reward for c in r.candidates], [c.correct for c in r.candidates], n) for r in results
        )
    return acc


def _at_k(kind: str, result: ProblemResult, candidates: list, k: int) -> float:
    """One problem's ``kind``@k over the size-k subsets of ``candidates``."""
    correct = [c.correct for c in candidates]
    if kind == "pass":
        return pass_at_k(len(candidates), sum(correct), k)
    if kind == "maj":
        return majority_at_k([c.answer for c in candidates], answer_truth(candidates), k, seed=hash_seed(result.id, k))
    if kind == "verified":
        return verified_at_k([bool(c.verified) for c in candidates], correct, k)
    if kind == "temporal":
        votes = [temporal_votes(c) for c in candidates]
        return weighted_vote_at_k(votes, answer_truth(candidates, trails=True), k, seed=hash_seed(result.id, k))
    return top_score_at_k([c.score for c in candidates], correct, k)


def hash_seed(problem_id: str, k: int) -> int:
    """Deterministic seed for maj@k subsets of one problem (str hash is salted per process)."""
    return sum((i + 1) * ord(ch) for i, ch in enumerate(problem_id)) * 1009 + k


def answer_truth(candidates: Sequence, trails: bool = False) -> dict:
    """answer -> correct, from the candidates that produced it (an answer key is
    correct iff the candidates giving it were judged correct); with ``trails`` also the
    answers of their intermediate predictions (``Candidate.trail``, judged as they were
    read)."""
    truth: dict = {}
    for c in candidates:
        if c.answer is not None:
            truth[c.answer] = truth.get(c.answer, False) or c.correct
        for answer, correct in (c.trail or []) if trails else []:
            if answer is not None:
                truth[answer] = truth.get(answer, False) or bool(correct)
    return truth


def summarise(results: Sequence[ProblemResult], n: int, *, has_verifier: bool, wall_s: float,
              first_k: bool = False) -> dict:
    """The ``accuracy`` and ``throughput`` blocks of metrics.json (``first_k``: the
    curves of each problem's first k candidates, ``accuracy_curves``; recorded as
    ``accuracy_over``)."""
    samples = len(results) * n
    tokens = sum(r.tokens for r in results)
    return {
        "problems": len(results),
        "samples": n,
        "wall_s": wall_s,
        "accuracy_over": "first k candidates" if first_k else "size-k subsets",
        "accuracy": accuracy_curves(results, n, has_verifier=has_verifier, first_k=first_k),
        "throughput": {
            "samples_per_s": samples / wall_s if wall_s > 0 else 0.0,
            "tokens_per_s": tokens / wall_s if wall_s > 0 else 0.0,
            "positions_per_s": sum(r.positions for r in results) / wall_s if wall_s > 0 else 0.0,
            "forward_passes": round(sum(r.nfe for r in results)),  # network calls (each problem holds its row share)
            "sampling_s": sum(r.seconds for r in results),
        },
    }


def summarise_stopped(results: Sequence[ProblemResult], n: int, stop, has_verifier: bool, *, wall_s: float) -> dict:
    """metrics.json of a search that stopped early (``Search.until_stopped``, ``stop`` its
    ``StopRule``): problems hold as many candidates as were drawn, so the per-k curves of
    ``summarise`` do not apply.

    ``accuracy.verified`` (tasks with a verifier): the verifier's pick (the best-scored
    verified candidate) is correct, 0 where none verified; ``accuracy.majority``: the most
    frequent answer of the candidates drawn is correct; ``solved_share``: a candidate
    verified within n; ``samples_drawn``: per problem, mean and max (<= n)."""
    return {"problems": len(results), "samples": n, "round_size": stop.round_size, "stop_on": stop.on,
            "stop_confidence": stop.confidence, "stop_fill": stop.fill, **_stopped_blocks(results, has_verifier, wall_s)}


def summarise_cascade(results: Sequence[ProblemResult], stages: list[dict], has_verifier: bool, *,
                      wall_s: float) -> dict:
    """metrics.json of a cascade (``search.cascade``; ``stages`` from ``Cascade.describe``):
    the blocks of ``summarise_stopped`` (accuracy of each problem's answering stage's pick),
    and per stage the share of problems that reached it, the share it accepted (its rule
    held on its own candidates: a verified one, a confident majority), its mean samples per
    problem (over all problems) and its sampling seconds."""
    count = max(len(results), 1)
    per_stage = []
    for s, stage in enumerate(stages):
        rule = StopRule.from_dict(stage)
        per_stage.append({**stage, "reached": sum(r.stage_samples[s] > 0 for r in results) / count,
                          "accepted": sum(accepts(rule, stage_candidates(r, s)) for r in results) / count,
                          "samples_drawn_mean": sum(r.stage_samples[s] for r in results) / count,
                          "sampling_s": sum(r.stage_seconds[s] for r in results)})
    return {"problems": len(results), "samples": sum(s["samples"] for s in stages), "stages": per_stage,
            **_stopped_blocks(results, has_verifier, wall_s)}


def score_means(task, problems: Sequence, results: Sequence[ProblemResult]) -> dict[str, float]:
    """metrics.json's ``scores``: each of ``task.score``'s readings (GSM8K: lm-eval's
    ``strict`` / ``flexible`` and ``numeric``; Sudoku: ``matches_reference``,
    ``cell_accuracy``) averaged over each problem's candidates, then over problems:
    the expected score of one sampled candidate; {} for a task without readings."""
    by_id = {p.id: p for p in problems}
    per_problem = []
    for result in results:
        rows = [task.score(by_id[result.id], c.text) for c in result.candidates]
        if rows and rows[0]:
            per_problem.append({key: mean(float(row[key]) for row in rows) for key in rows[0]})
    if not per_problem:
        return {}
    return {key: mean(row[key] for row in per_problem) for key in per_problem[0]}


def verified_pick_correct(result: ProblemResult) -> bool:
    """Whether the verifier's pick (the best-scored verified candidate) is correct; False when none verified."""
    verified = [c for c in result.candidates if c.verified]
    return bool(verified) and max(verified, key=lambda c: c.score).correct


def _stopped_blocks(results: Sequence[ProblemResult], has_verifier: bool, wall_s: float) -> dict:
    """accuracy, solved_share, samples_drawn and throughput of a search that stopped early."""
    drawn = [len(r.candidates) for r in results]
    count = max(len(results), 1)
    accuracy = {"majority": sum(answer_truth(r.candidates).get(r.selected.get("majority"), False) for r in results) / count}
    if has_verifier:
        accuracy["verified"] = sum(map(verified_pick_correct, results)) / count
    return {
        "wall_s": wall_s,
        "accuracy": accuracy,
        "solved_share": sum(any(c.verified for c in r.candidates) for r in results) / count,
        "samples_drawn": {"mean": sum(drawn) / count, "max": max(drawn, default=0), "total": sum(drawn)},
        "throughput": {
            "seconds_per_problem": wall_s / count,
            "samples_per_s": sum(drawn) / wall_s if wall_s > 0 else 0.0,
            "tokens_per_s": sum(r.tokens for r in results) / wall_s if wall_s > 0 else 0.0,
            "forward_passes": round(sum(r.nfe for r in results)),
            "sampling_s": sum(r.seconds for r in results),
        },
    }


def format_summary(metrics: dict) -> str:
    """A markdown table: one row per k, columns pass / maj / verified / confidence (a
    verify-and-stop run or a cascade: its accuracy and the samples it drew)."""
    if "stages" in metrics:
        drawn, tp, acc = metrics["samples_drawn"], metrics["throughput"], metrics["accuracy"]
        scores = ", ".join(f"{kind} accuracy {acc[kind]:.3f}" for kind in ("verified", "majority") if kind in acc)
        lines = [f"cascade: {scores} on {metrics['problems']} problems, {drawn['mean']:.2f} samples drawn per problem "
                 f"(max {drawn['max']}), {tp['seconds_per_problem'] * 1e3:.1f} ms per problem", "",
                 "| stage | model | accepts on | rounds of | at most | reached | accepted | samples / problem | sampling s |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for i, s in enumerate(metrics["stages"]):
            on = s.get("on", "verified") + (f" >= {s['confidence']}" if s.get("confidence") is not None else "")
            lines.append(f"| {i + 1} | {s['model']} | {on} | {s['round_size']} | {s['samples']} | {s['reached']:.3f} | "
                         f"{s['accepted']:.3f} | {s['samples_drawn_mean']:.2f} | {s['sampling_s']:.1f} |")
        return "\n".join(lines)
    if "round_size" in metrics:
        drawn, tp, on = metrics["samples_drawn"], metrics["throughput"], metrics.get("stop_on", "verified")
        rule = on if metrics.get("stop_confidence") is None else f"{on} at {metrics['stop_confidence']}"
        return (f"stop on {rule}, rounds of {metrics['round_size']}, at most {metrics['samples']} samples: "
                f"{on} accuracy {metrics['accuracy'][on]:.3f} on {metrics['problems']} problems, "
                f"{drawn['mean']:.2f} samples drawn per problem (max {drawn['max']}), "
                f"{tp['seconds_per_problem'] * 1e3:.1f} ms per problem, {tp['forward_passes']} forward passes")
    acc = metrics.get("accuracy", {})
    n = metrics.get("samples", 1)
    kinds = [kind for kind in ("pass", "maj", "verified", "confidence", "temporal") if f"{kind}@1" in acc]
    lines = ["| k | " + " | ".join(f"{kind}@k" for kind in kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for k in ks_up_to(n):
        lines.append(f"| {k} | " + " | ".join(f"{acc[f'{kind}@{k}']:.3f}" for kind in kinds) + " |")
    legend = {"pass": "pass@k: some of k samples is correct (an oracle's pick)",
              "maj": "maj@k: the most frequent answer of k samples is correct",
              "verified": "verified@k: the verifier's pick of k samples (most confident verified) is correct",
              "confidence": "confidence@k: the most confident of k samples (mean log-prob) is correct",
              "temporal": "temporal@k: the weighted vote of k samples' final and intermediate answers is correct"}
    lines += ["", *(legend[kind] for kind in kinds)]
    tp = metrics.get("throughput", {})
    if metrics.get("scores"):
        lines += ["", "one candidate's expected score: "
                  + ", ".join(f"{key} {value:.3f}" for key, value in metrics["scores"].items())]
    lines.append("")
    lines.append(
        f"{metrics.get('problems', 0)} problems x {n} samples in {metrics.get('wall_s', 0):.1f} s: "
        f"{tp.get('samples_per_s', 0):.1f} samples/s, {tp.get('tokens_per_s', 0):.0f} tokens/s, "
        f"{tp.get('forward_passes', 0)} forward passes"
        + ("; @k over each problem's first k candidates (stratified first tokens)"
           if metrics.get("accuracy_over") == "first k candidates" else "")
    )
    return "\n".join(lines)


def fitted_range(values: Sequence[float]) -> tuple[float, float]:
    """The accuracy axis of the plot: the data's range with a margin, inside [0, 1]."""
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max(0.02, 0.08 * (hi - lo))
    return max(0.0, lo - pad), min(1.0, hi + pad)


def plot_accuracy(metrics: dict, path) -> bool:
    """accuracy_vs_samples.png: pass@k, maj@k, verified@k, confidence@k against k.

    Returns False (and writes nothing) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    acc = metrics.get("accuracy", {})
    ks = ks_up_to(metrics.get("samples", 1))
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    styles = {"pass": ("o", "-"), "maj": ("s", "--"), "verified": ("^", "-."), "confidence": ("D", ":")}
    values = []
    for kind, (marker, line) in styles.items():  # distinct markers and lines: equal curves stay visible
        if f"{kind}@1" in acc:
            ys = [acc[f"{kind}@{k}"] for k in ks]
            values += ys
            ax.plot(ks, ys, marker=marker, linestyle=line, markersize=5, markerfacecolor="none", label=f"{kind}@k")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("samples per problem k")
    ax.set_ylabel("accuracy")
    ax.set_ylim(*fitted_range(values))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the axes, off the points
    ax.set_title(f"{metrics.get('task', '')} {metrics.get('model', '')}".strip())
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
