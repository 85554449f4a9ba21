"""Comparisons of a run's models: student/teacher speed-ups against the speed bar, student
against AR verdicts per budget with paired intervals, break-even speeds, and the search
targets worded for the report."""
from __future__ import annotations

import math
import statistics

from .budget import curve, per_problem_at_k


def names_with(models: dict, role: str) -> list[str]:
    return [m for m, d in models.items() if d["role"] == role]


def student_steps(d: dict) -> float:
    """What the speed bar divides by for a model of ``report["models"]``: ``bar_steps``, or
    the sampler steps a generate took when fewer (``calls_per_generate``: its network calls
    without the window, ``forward_share``); a threshold sampler whose step budget never
    binds, e.g. ``steps=12`` on the 4-call student, is held to the steps it takes."""
    steps = d.get("bar_steps", d["steps"])
    calls = d.get("calls_per_generate")
    return min(steps, calls) if calls else steps


def speedups(report: dict) -> list[dict]:
    """Each student (and the AR twin) against the first teacher, side by side: samples/s
    ratio at every batch and in the search run, the latency ratio one problem at a time
    (k = 1 and 8 samples, when the latency regime ran), and the pass@1 ratio. A student
    meets its speed bar in a regime (``met_in``: "search", "k=1", "k=8") when its ratio
    there is >= (teacher steps / student steps) x 0.8 at >= 95 % of the teacher's pass@1."""
    models = report["models"]
    teachers = names_with(models, "teacher")
    if not teachers:
        return []
    teacher = models[teachers[0]]
    rows = []
    for name, d in models.items():
        if d["role"] == "teacher":
            continue
        per_batch = {t["batch"]: t["samples_per_s"] / tt["samples_per_s"]
                     for t, tt in zip(d["throughput"], teacher["throughput"])}
        keep = d["search"]["pass@1"] / teacher["search"]["pass@1"] if teacher["search"]["pass@1"] else float("nan")
        row = {"model": name, "teacher": teachers[0], "role": d["role"], "steps": d["steps"], "per_batch": per_batch,
               "search": teacher["search"]["seconds_per_sample"] / d["search"]["seconds_per_sample"], "pass@1_ratio": keep}
        latency, teacher_latency = report.get("latency", {}).get(name, {}), report.get("latency", {}).get(teachers[0], {})
        row["latency"] = {k: teacher_latency[k] / latency[k] for k in (1, 8) if k in latency and k in teacher_latency}
        if d["role"] == "student":
            row["target_speedup"] = teacher["steps"] / student_steps(d) * 0.8
            ratios = {"search": row["search"], **{f"k={k}": r for k, r in row["latency"].items()}}
            row["met_in"] = [where for where, r in ratios.items() if r >= row["target_speedup"] and keep >= 0.95]
            row["met"] = "search" in row["met_in"]
        rows.append(row)
    return rows


Z95 = 1.96  # two-sided 95 % normal quantile


def paired_se(a: list[float], b: list[float]) -> float:
    """Standard error of mean(a) - mean(b) over the same problems (paired: the problems'
    own difficulty cancels, what is left is how the two models differ problem by problem)."""
    if len(a) != len(b):
        raise ValueError(f"paired_se needs the same problems: got {len(a)} and {len(b)} values")
    if len(a) < 2:
        return 0.0
    return statistics.stdev(x - y for x, y in zip(a, b)) / math.sqrt(len(a))


def verdicts(report: dict, points: list[dict] | None = None) -> list[dict]:
    """Per budget of ``points`` (default: the throughput frontier, ``report["frontier"]``): the best student + verifier against the best AR model + verifier
    (with several AR engines, e.g. vLLM and transformers, whichever is ahead there).

    A side wins only when the difference is larger than half a problem (0.5 / problems)
    and than 1.96 paired standard errors over the problems (``paired_se`` of the two
    models' per-problem verified@k, where the search runs kept them): a smaller one is a
    tie, the problems measured cannot tell the two apart. (The error counts the
    problems and samples drawn, not the timing noise that sets k.)"""
    models = report["models"]
    ars, students = names_with(models, "ar"), names_with(models, "student")
    if not ars or not students:
        return []
    problems = report.get("problems", 0)
    out = []
    for point in report["frontier"] if points is None else points:
        best = max(students, key=lambda m: point["accuracy"][m])
        ar = max(ars, key=lambda m: point["accuracy"][m])  # the best AR engine at this budget
        runs = [models[m].get("search", {}).get("per_problem") for m in (best, ar)]
        se = (paired_se(per_problem_at_k(runs[0], point["k"][best]), per_problem_at_k(runs[1], point["k"][ar]))
              if all(runs) else 0.0)
        out.append(_verdict(point["budget_s"], best, point["accuracy"][best], point["k"][best], ar,
                            point["accuracy"][ar], point["k"][ar], se, problems))
    return out


def _verdict(budget: float, student: str, s: float, student_k: int, ar: str, a: float, ar_k: int, se: float,
             problems: int, **extra) -> dict:
    """One budget's verdict (``verdicts``): a win needs a margin beyond half a problem and
    1.96 paired standard errors ``se``; none when neither side affords a sample."""
    half_problem = 0.5 / problems if problems else 1e-12
    if student_k == 0 and ar_k == 0:
        winner = "none"  # neither affords a sample
    elif abs(s - a) < max(half_problem, Z95 * se):
        winner = "tie"
    else:
        winner = "student" if s > a else "ar"
    return {"budget_s": budget, "student": student, "ar": ar, "student_accuracy": s, "ar_accuracy": a,
            "student_k": student_k, "ar_k": ar_k, "winner": winner, "margin_problems": (s - a) * problems,
            "margin_ci95_problems": Z95 * se * problems, "problems": problems, **extra}


def cascade_verdicts(report: dict, cascade_key: str, stop_key: str) -> list[dict]:
    """Per budget: the best cascade (student then AR) against the best AR engine alone with
    verify-and-stop at the same mean budget (``stop_key``'s points), as ``verdicts`` words it."""
    models = report["models"]
    ars = names_with(models, "ar")
    problems = report.get("problems", 0)
    out = []
    for point, alone in zip(report[cascade_key], report[stop_key]):
        best = max(point["accuracy"], key=lambda m: point["accuracy"][m])
        ar = max(ars, key=lambda m: alone["accuracy"][m])
        se = paired_se(point["per_problem"][best], per_problem_at_k(models[ar]["search"]["per_problem"], alone["k"][ar]))
        out.append(_verdict(point["budget_s"], f"{best} -> AR", point["accuracy"][best], point["k"][best], ar,
                            alone["accuracy"][ar], alone["k"][ar], se, problems, label="the cascade"))
    return out


def family_verdicts(students: list[dict], ars: list[dict], problems: int) -> list[dict]:
    """Per mean budget: the students' best cascade among themselves (``family_points``,
    e.g. a student at temperature 1, then the same student with a hotter head) against the
    AR engines' best among themselves, worded as ``verdicts``. No AR model is in the
    student side, so this is the target's "student + verifier" against "AR + verifier", each
    with every verify-and-stop setting and hand-off its own family offers."""
    out = []
    for s, a in zip(students, ars):
        se = paired_se(s["per_problem"], a["per_problem"])
        out.append(_verdict(s["budget_s"], _family_name(s), s["accuracy"], s["k"], _family_name(a), a["accuracy"],
                            a["k"], se, problems))
    return out


def _family_name(point: dict) -> str:
    setting = point["setting"]
    return point["model"] + (f" -> {setting[2]}" if setting and setting[2] else "")


def break_even(student: list[float], ar: list[float], ks: list[int]) -> dict[int, float | None]:
    """For each AR sample count k: the smallest k' with student verified@k' >= AR
    verified@k, as the ratio k' / k (how many times the AR model's samples per second
    the student must draw to match it at that budget; < 1: it is ahead even when slower),
    or None when no k' <= N reaches it. Curves are verified@1..N; this depends only on the
    accuracy runs, not on the machine."""
    out = {}
    for k in ks:
        if k > len(ar):
            continue
        need = next((kp for kp, acc in enumerate(student, start=1) if acc >= ar[k - 1] - 1e-12), None)
        out[k] = None if need is None else need / k
    return out


def break_even_table(report: dict) -> list[dict]:
    """Per student, against each AR model: ``break_even`` at k = 1, 2, 4, ... <= N."""
    models = report["models"]
    runs = {m: d.get("search", {}).get("per_problem") for m, d in models.items()}
    curves = {m: curve(r, len(r[0]["verified"])) for m, r in runs.items() if r}  # verified@1..N, each model's own N
    rows = []
    for ar in names_with(models, "ar"):
        if ar not in curves:
            continue
        n = len(curves[ar])
        ks = [2 ** i for i in range(n.bit_length()) if 2 ** i <= n]
        for s in names_with(models, "student"):
            if s in curves:
                rows.append({"student": s, "ar": ar, "ks": ks, "ar_accuracy": [curves[ar][k - 1] for k in ks],
                             "ratio": break_even(curves[s], curves[ar], ks)})
    return rows


def unequal_lengths(report: dict) -> str | None:
    """A warning when the diffusion models of a run decode different answer lengths.

    A diffusion sampler fills every one of its gen_length columns (it does not stop at
    EOS like an AR decoder), so a model with more columns does more work for the same
    answers and every speed ratio against it is inflated (seen: an AR twin read as a
    denoiser decoding its 21 columns against students decoding 12)."""
    lengths = {n: d["gen_length"] for n, d in report["models"].items() if d.get("kind") != "ar" and d.get("gen_length")}
    if len(set(lengths.values())) <= 1:
        return None
    shortest = min(lengths.values())
    listed = ", ".join(f"{n}: {g}" for n, g in lengths.items())
    return (f"the diffusion models decode different answer lengths ({listed} columns): speed ratios between them "
            f"compare unequal work; give the longer ones `gen_length={shortest}` in their spec")


def targets(report: dict) -> list[str]:
    """The search targets, checked on this run's numbers."""
    lines = []
    warning = unequal_lengths(report)
    if warning:
        lines.append(f"- **Warning**: {warning}")
    for row in report["speedups"]:
        if row["role"] != "student":
            continue
        one = "".join(f", {r:.2f}x one problem at a time with k = {k}" for k, r in row.get("latency", {}).items())
        met_in = row.get("met_in", ["search"] if row["met"] else [])
        verdict = ("NOT met" if not met_in else "met" if len(met_in) == 1 + len(row.get("latency", {}))
                   else "met at " + ", ".join(met_in) + " only")
        lines.append(f"- {row['model']} vs {row['teacher']}: {row['search']:.2f}x faster in search{one} "
                     f"(target >= {row['target_speedup']:.1f}x), pass@1 ratio {row['pass@1_ratio']:.3f} "
                     f"(target >= 0.95): {verdict}")
    if report["verdicts"]:
        lines.append(budget_line(report["verdicts"], "equal wall-clock budget"))
    if report.get("batch_stop_verdicts"):
        lines.append(budget_line(report["batch_stop_verdicts"], "equal mean cost, verify-and-stop in the search run"))
    if report.get("latency_verdicts"):
        lines.append(budget_line(report["latency_verdicts"], "equal latency, one problem at a time"))
    if report.get("stop_verdicts"):
        lines.append(budget_line(report["stop_verdicts"], "equal mean latency, verify-and-stop one problem at a time"))
    for key, regime in (("batch_family_verdicts", "in the search run"), ("family_verdicts", "one problem at a time")):
        if report.get(key):
            lines.append(budget_line(report[key], f"equal mean cost, each family's best verify-and-stop cascade {regime}",
                                      "best SDTT-student cascade + verifier"))
    return lines


def budget_line(vs: list[dict], regime: str, side: str = "best SDTT student + verifier", who: str = "the student",
                words: tuple[str, str] = ("met (AR solves more at none)", "NOT met")) -> str:
    """One target line: at how many budgets of a regime the student (``side``, ``who``)
    solves more, and where AR does. Met (``words``) when AR solves more nowhere and the
    student somewhere AR affords a sample too (ties are left where the two cannot be told
    apart, e.g. both at 1.000 once the budget buys enough samples; a win below one AR sample
    alone meets nothing)."""
    ar = " / ".join(dict.fromkeys(v["ar"] for v in vs))  # every AR engine that led somewhere
    scored = [v for v in vs if v["winner"] != "none"]
    wins = [v for v in scored if v["winner"] == "student"]
    ar_wins = [v for v in scored if v["winner"] == "ar"]
    ties = [v for v in scored if v["winner"] == "tie"]
    below = sum(v["ar_k"] == 0 for v in wins)
    met = len(wins) > below and not ar_wins
    line = (f"- {regime}, {side} vs {ar} + verifier: {who} solves more "
            f"at {len(wins)} of {len(scored)} budgets" + (f" ({below} below one AR sample)" if below else "")
            + f": {words[0] if met else words[1]}")
    if wins:
        line += f". {who.capitalize()} solves more at " + ", ".join(f"{v['budget_s']:.3g}s" for v in wins)
    if ar_wins:
        line += (f". The AR baseline solves more at {len(ar_wins)} budgets: "
                 + ", ".join(f"{v['budget_s']:.3g}s" for v in ar_wins))
    if ties:
        line += "; ties at " + ", ".join(f"{v['budget_s']:.3g}s" for v in ties)
    return line
