"""The run's tables as markdown (``frontier.md``): models, throughput, speed-ups, every
budget regime with its verdicts, break-even speeds and the targets."""
from __future__ import annotations

from pathlib import Path

from .compare import budget_line, names_with


def _acc(x: float) -> str:
    """3 decimals, or 4 when 3 would print 1.000 for less than 1."""
    return f"{x:.4f}" if x < 1 and f"{x:.3f}" == "1.000" else f"{x:.3f}"


def verdict_text(v: dict) -> str:
    if v["winner"] == "none":
        return "neither affords a sample"
    ci = v.get("margin_ci95_problems", 0.0)
    pm = f" ± {ci:.1f}" if ci else ""
    of = f" of {v['problems']}" if v.get("problems") else ""
    if v["winner"] == "tie":
        diff = f"; {v['margin_problems']:+.1f}{pm}{of} problems" if pm else ""
        return f"tie ({v['student']} {_acc(v['student_accuracy'])}, {v['ar']} {_acc(v['ar_accuracy'])}{diff})"
    s, a = _acc(v["student_accuracy"]), _acc(v["ar_accuracy"])
    label = v.get("label", "the student")
    if v["winner"] == "ar":
        note = f" ({label} affords no sample)" if v["student_k"] == 0 else ""
        return f"**AR wins** by {-v['margin_problems']:.1f}{pm}{of} problems: {v['ar']} {a} > {v['student']} {s}{note}"
    note = " (the AR twin affords no sample)" if v["ar_k"] == 0 else ""
    return (f"{label.removeprefix('the ')} wins by {v['margin_problems']:.1f}{pm}{of} problems: {v['student']} {s} > "
            f"{v['ar']} {a}{note}")


def _steps(d: dict) -> str:
    """The step budget, and the calls a generate made where fewer (a budget that never binds)."""
    calls = d.get("calls_per_generate")
    return f"{d['steps']} ({calls} calls)" if calls and calls < d["steps"] else f"{d['steps']}"


def _share(d: dict) -> str:
    return "n/a" if d["forward_share"] is None else f"{d['forward_share']:.2f}"


def _round_ms(search: dict) -> str:
    value = search.get("seconds_per_round_sample")
    return "-" if value is None else f"{value * 1e3:.2f} ms"


def markdown(report: dict) -> str:
    models = report["models"]
    names = list(models)
    batches = report["batches"]
    out = [f"## Frontier: {report['task']} ({report['when']})", "",
           f"Machine: {report['machine']}. Command: `{report['command']}`", "",
           (f"{report['problems']} test problems x {report['samples']} samples per model (pass@1, verified@N), search "
            f"batch {report['search_batch']}. Timings side by side: {report['repeats']} rounds after a warm-up round, "
            "each running every model in turn, medians; s/sample = a search slice's wall time (generate + verify; "
            f"{report.get('search_calls', 2)} calls) / its samples; a round's s/sample: the same for one candidate of "
            "each of as many problems (what a verify-and-stop round of one sample per problem costs; no shared "
            "prompts)."), "",
           "| model | kind | steps | params | backend | pass@1 (± se) | verified@N | s/sample in search | a round's s/sample "
           "| forward share | GFLOPs/token |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        d = models[n]
        out.append(f"| {n} | {d['kind']} | {_steps(d)} | {d['parameters'] / 1e6:.2f}M | {d['backend']} | "
                   f"{d['search']['pass@1']:.3f} ± {d['search']['pass@1_se']:.3f} | {d['search']['verified@N']:.3f} | "
                   f"{d['search']['seconds_per_sample'] * 1e3:.2f} ms | {_round_ms(d['search'])} | {_share(d)} | "
                   f"{d['flops_per_token'] / 1e9:.4f}"
                   f"{'' if d['flops_source'] == 'counted' else ' (' + d['flops_source'] + ')'} |")
    out += _per_batch_table("Throughput, samples/s \\| generated tokens/s (median of repeats after a warm-up):",
                            names, models, batches, lambda t: f"{t['samples_per_s']:.1f} \\| {t['tokens_per_s']:.0f}")
    if all("forward_passes" in t for n in names for t in models[n]["throughput"]):  # runs since 2026-12-07
        out += _per_batch_table(
            "Forward passes per sample \\| generated tokens per forward pass (machine-free: they travel across "
            "cards, tokens/s does not):", names, models, batches,
            lambda t: f"{t['forward_passes']:.0f} \\| {t['tokens_per_pass']:.2f}")
    if report["speedups"]:
        lat_ks = list(report["speedups"][0].get("latency", {}))
        out += ["", (f"Speed-up over {report['speedups'][0]['teacher']} (samples/s ratio, measured side by side"
                     + ("; 1 problem: its latency ratio one problem at a time" if lat_ks else "") + "):"), "",
                "| model | steps | " + " | ".join(f"batch {b}" for b in batches) + " | search | "
                + "".join(f"1 problem, k={k} | " for k in lat_ks) + "target | pass@1 ratio |",
                "|---|---|" + "---|" * (len(batches) + len(lat_ks) + 3)]
        for row in report["speedups"]:
            target = f">= {row['target_speedup']:.1f}x" if "target_speedup" in row else "-"
            lat = "".join(f"{row['latency'][k]:.2f}x | " if k in row.get("latency", {}) else "- | " for k in lat_ks)
            out.append(f"| {row['model']} | {row['steps']} | " + " | ".join(f"{row['per_batch'][b]:.2f}x" for b in batches)
                       + f" | {row['search']:.2f}x | {lat}{target} | {row['pass@1_ratio']:.3f} |")
    out += _budget_table(
        names, report["frontier"], report["verdicts"], "budget (s/problem)",
        (f"Verified accuracy at equal wall-clock budgets per problem (k = samples affordable; N = "
         f"{report['samples']} measured; `*` = capped at N; student vs AR: the best SDTT student + verifier "
         "against the best AR engine + verifier, margins in problems ± 1.96 paired standard errors over the problems; "
         "a tie when within that or half a problem):"),
        lambda p, n: f"{_acc(p['accuracy'][n])} (k={p['k'][n]}){'*' if p['capped'][n] else ''}")
    if report.get("batch_stop_frontier"):
        out += _stopping_sections(report, "batch_", "in the search run", (
            "Verify-and-stop in the search run (rounds of one sample per open problem, packed into the search "
            "batch, until one verifies, at most k; mean cost per problem = a round's s/sample x the expected samples "
            "from the verified counts; rounds of 1 draw the fewest samples when every sample costs the same):"))
    if report.get("latency"):
        out += _latency_markdown(report)
    if report.get("break_even"):
        ks = report["break_even"][0]["ks"]
        out += ["", ("Samples/s over the AR model that a student needs to match AR + verifier drawing k samples "
                     "(k' / k for the smallest k' with student verified@k' >= AR verified@k; from the accuracy runs "
                     "alone, so it holds on any machine: compare it with the measured speed ratios; `never` = not "
                     "within N):"), "",
                "| student | AR | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
        for row in report["break_even"]:
            cells = ["never" if row["ratio"].get(k) is None else f"{row['ratio'][k]:.2g}x" for k in ks]
            out.append(f"| {row['student']} | {row['ar']} | " + " | ".join(cells) + " |")
    out += ["", "Targets:", "", *report["targets"], ""]
    return "\n".join(out)


def _per_batch_table(caption: str, names: list[str], models: dict, batches: list[int], cell) -> list[str]:
    """A table of one row per model and one column per batch size, ``cell(throughput row)`` in each."""
    out = ["", caption, "", "| model | " + " | ".join(f"batch {b}" for b in batches) + " |",
           "|---|" + "---|" * len(batches)]
    for n in names:
        out.append(f"| {n} | " + " | ".join(cell(t) for t in models[n]["throughput"]) + " |")
    return out


def _latency_markdown(report: dict) -> list[str]:
    """The latency regime's two tables: seconds for k samples of one problem, and verified
    accuracy within a latency budget."""
    names, ks = list(report["models"]), report["latency_ks"]
    out = ["", (f"Latency regime, one problem at a time (its k samples in one generate call, then verified; median "
                f"of {report['latency_problems']} problems x {report['repeats']} rounds after a warm-up round), ms:"),
           "", "| model | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for n in names:
        out.append(f"| {n} | " + " | ".join(f"{report['latency'][n][k] * 1e3:.1f}" for k in ks) + " |")
    out += _budget_table(
        names, report["latency_frontier"], report.get("latency_verdicts"), "latency budget (s)",
        ("Verified accuracy within a latency budget per problem (k = the most samples whose measured latency "
         "fits; accuracy = verified@k from the accuracy runs; student vs AR as above):"),
        lambda p, n: f"{_acc(p['accuracy'][n])} (k={p['k'][n]})")
    if report.get("stop_frontier"):
        out += _stopping_sections(report, "", "one problem at a time", (
            "Verify-and-stop one problem at a time (rounds of r samples until one verifies, at most k; mean latency "
            "per problem = the timed latency of r samples x the expected rounds from the accuracy runs' verified "
            "counts; accuracy = verified@k; each model's best (r, k) within a mean budget; student vs AR as above):"))
    return out


def _stopping_sections(report: dict, prefix: str, regime: str, caption: str) -> list[str]:
    """Verify-and-stop, cascades and families of one regime (``prefix``: "batch_" for the
    search run, "" for one problem at a time: the report's keys of that regime)."""
    return (_stop_markdown(report, f"{prefix}stop_frontier", f"{prefix}stop_verdicts", caption)
            + _cascade_markdown(report, f"{prefix}cascade_frontier", f"{prefix}cascade_verdicts",
                                f"{prefix}stop_frontier", regime)
            + _family_markdown(report, f"{prefix}family", regime))


def _stop_markdown(report: dict, key: str, verdict_key: str, caption: str) -> list[str]:
    """A verify-and-stop table: per mean budget, each model's best (r, k), its accuracy and mean cost."""
    return _budget_table(
        list(report["models"]), report[key], report.get(verdict_key), "mean budget (s/problem)", caption,
        lambda p, n: (f"{_acc(p['accuracy'][n])} (r={p['round'][n]}, k={p['k'][n]}, {p['mean_s'][n] * 1e3:.2g} ms)"
                      if p["k"][n] else "0.000 (-)"))


def _cascade_markdown(report: dict, key: str, verdict_key: str, stop_key: str, regime: str) -> list[str]:
    """A cascade table: per mean budget, each student's best cascade into an AR engine
    (``cascade_points``) beside each AR engine alone with verify-and-stop, then one line
    saying where the cascade solves more (not one of the search targets: the AR model is part
    of the cascade)."""
    if not report.get(key):
        return []
    students = list(report[key][0]["accuracy"])
    ars = names_with(report["models"], "ar")
    column = {f"{s} -> AR": s for s in students} | {f"{a} alone": a for a in ars}
    points = [{**p, "alone": alone} for p, alone in zip(report[key], report[stop_key])]

    def cell(p: dict, name: str) -> str:
        model = column[name]
        if model in ars:
            alone = p["alone"]
            return (f"{_acc(alone['accuracy'][model])} (r={alone['round'][model]}, k={alone['k'][model]}, "
                    f"{alone['mean_s'][model] * 1e3:.2g} ms)" if alone["k"][model] else "0.000 (-)")
        setting = p["setting"][model]
        if setting is None:
            return "0.000 (-)"
        r1, k1, ar, r2, k2 = setting
        then = f"; {ar} r={r2}, k={k2}" if ar else ""
        return f"{_acc(p['accuracy'][model])} (r={r1}, k={k1}{then}; {p['mean_s'][model] * 1e3:.2g} ms)"

    caption = (f"Cascade, {regime}: each student in rounds of r until a sample verifies (at most k), then, only where "
               "none did, an AR engine in rounds of its own (`sdtt_search.Cascade`, CLI `fallback.model=`); mean cost "
               "per problem and accuracy exact from both accuracy runs (`benchmarks/cascade_pricing.py`), beside each AR "
               "engine alone with verify-and-stop; cascade vs AR as above:")
    out = _budget_table(list(column), points, report.get(verdict_key), "mean budget (s/problem)", caption, cell,
                        "cascade vs AR alone")
    line = budget_line(report[verdict_key], f"Cascade, {regime} (not one of the search targets: the AR twin is part "
                        "of it)", "best cascade + verifier", "the cascade",
                        ("never behind, and ahead where AR affords a sample too",
                         "not ahead where AR affords a sample, or behind somewhere"))
    return out + ["", line]


def _family_markdown(report: dict, key: str, regime: str) -> list[str]:
    """Each family's best cascade among its own models per mean budget (``family_points``),
    students against AR (one of the search targets: no AR model is on the student side)."""
    if not report.get(key + "_frontier"):
        return []
    sides = report[key + "_frontier"]
    points = [{"budget_s": s["budget_s"], "student": s, "ar": a} for s, a in zip(sides["student"], sides["ar"])]

    columns = {"SDTT students, best cascade": "student", "AR engines, best cascade": "ar"}

    def cell(p: dict, column: str) -> str:
        q = p[columns[column]]
        if q["setting"] is None:
            return "0.000 (-)"
        r1, k1, then, r2, k2 = q["setting"]
        rest = f"; then {then} r={r2}, k={k2}" if then else ""
        return f"{_acc(q['accuracy'])} ({q['model']} r={r1}, k={k1}{rest}; {q['mean_s'] * 1e3:.2g} ms)"

    caption = (f"Each family's best cascade among its own models, {regime}: a model in rounds of r until a sample "
               "verifies (at most k), then, where none did, another model of the same family (e.g. the same student "
               "with a hotter head, `sampler.head_tokens` / `head_temperature`) or nothing; priced exactly from the "
               "accuracy runs (`benchmarks/cascade_pricing.py`); students vs AR as above:")
    return _budget_table(list(columns), points, report.get(key + "_verdicts"), "mean budget (s/problem)", caption,
                         cell, "students vs AR")


def _budget_table(names: list[str], points: list[dict], verdicts_: list[dict] | None, budget_label: str,
                  caption: str, cell, verdict_label: str = "student vs AR") -> list[str]:
    """One budget table: a row per point, ``cell(point, model)`` per model, the verdict last."""
    out = ["", caption, "", f"| {budget_label} | " + " | ".join(names) + " |" + (f" {verdict_label} |" if verdicts_ else ""),
           "|---|" + "---|" * (len(names) + bool(verdicts_))]
    for i, point in enumerate(points):
        verdict = f" {verdict_text(verdicts_[i])} |" if verdicts_ else ""
        out.append(f"| {point['budget_s']:.3g} | " + " | ".join(cell(point, n) for n in names) + " |" + verdict)
    return out


def write_report(text: str, report: dict, out_dir: Path) -> None:
    """``<out>/frontier.md``: this run's tables, its plot and its wall time."""
    (out_dir / "frontier.md").write_text(text + f"\n\nPlot: `frontier.png`; wall time of the run "
                                         f"{report['wall_seconds'] / 60:.1f} min.\n")
