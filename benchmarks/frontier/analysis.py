"""Everything computed from a run's measurements (the budget points, speed-ups, verdicts,
break-even table and targets), so that a saved run re-renders without measuring."""
from __future__ import annotations

from .budget import (budget_grid, cascade_points, family_points, frontier_points, latency_grid, latency_points,
                     round_seconds, stop_points)
from .compare import break_even_table, cascade_verdicts, family_verdicts, names_with, speedups, targets, verdicts


def analyse(report: dict, budgets: int) -> dict:
    """Everything computed from the measurements: both frontiers, speed-ups, verdicts,
    break-even table and targets (so a saved run re-renders with ``--render``)."""
    runs = {n: d["search"] for n, d in report["models"].items()}
    grid = budget_grid(runs, report["samples"], budgets)
    per_sample = {n: {1: round_seconds(r)} for n, r in runs.items()}  # a round of one sample per open problem
    students, ars = names_with(report["models"], "student"), names_with(report["models"], "ar")
    report["frontier"] = frontier_points(runs, grid)
    report["batch_stop_frontier"] = stop_points(runs, per_sample, grid)
    families = students and ars and (len(students) > 1 or len(ars) > 1)  # else the same as verify-and-stop alone
    if students and ars:
        report["batch_cascade_frontier"] = cascade_points(runs, per_sample, grid, students, ars)
        report["batch_cascade_verdicts"] = cascade_verdicts(report, "batch_cascade_frontier", "batch_stop_frontier")
    if families:
        _families(report, "batch_family", runs, per_sample, grid, students, ars)
    if report.get("latency"):
        grid = latency_grid(report["latency"], budgets)
        report["latency_frontier"] = latency_points(runs, report["latency"], grid)
        report["stop_frontier"] = stop_points(runs, report["latency"], grid)
        if students and ars:
            report["cascade_frontier"] = cascade_points(runs, report["latency"], grid, students, ars)
            report["cascade_verdicts"] = cascade_verdicts(report, "cascade_frontier", "stop_frontier")
        if families:
            _families(report, "family", runs, report["latency"], grid, students, ars)
    report["speedups"] = speedups(report)
    report["verdicts"] = verdicts(report)
    report["batch_stop_verdicts"] = verdicts(report, report["batch_stop_frontier"])
    if report.get("latency"):
        report["latency_verdicts"] = verdicts(report, report["latency_frontier"])
        report["stop_verdicts"] = verdicts(report, report["stop_frontier"])
    report["break_even"] = break_even_table(report)
    report["targets"] = targets(report)
    return report


def _families(report: dict, key: str, runs: dict, latencies: dict, grid: list[float], students: list[str],
              ars: list[str]) -> None:
    """``report[key + "_frontier"]``: each family's best cascade among its own models per
    mean budget; ``report[key + "_verdicts"]``: students against AR there."""
    report[key + "_frontier"] = {side: family_points(cascade_points(runs, latencies, grid, names, names))
                                 for side, names in (("student", students), ("ar", ars))}
    report[key + "_verdicts"] = family_verdicts(report[key + "_frontier"]["student"], report[key + "_frontier"]["ar"],
                                                report.get("problems", 0))
