"""A run's ``frontier.json``: the report with per-problem lists kept as counts (``slim``),
read back (``unslim``, ``load``), and saved accuracy runs reused for retiming
(``--accuracy-from``)."""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from .budget import verified_counts


def slim(report: dict) -> dict:
    """The report for frontier.json: per-problem (verified, correct) lists become counts
    (n, v, c_v per problem are all verified@k needs)."""
    out = json.loads(json.dumps(report))
    for key in ("batch_cascade_frontier", "cascade_frontier"):  # per-problem accuracies: recomputed on --render
        for point in out.get(key, []):
            point.pop("per_problem", None)
    for key in ("batch_family_frontier", "family_frontier"):
        for side in out.get(key, {}).values():
            for point in side:
                point.pop("per_problem", None)
    for d in out["models"].values():
        per_problem = d["search"].pop("per_problem")
        d["search"]["verified_counts"], d["search"]["verified_correct_counts"] = verified_counts(per_problem)
        d["search"]["correct_counts"] = [sum(p["correct"]) for p in per_problem]
        if per_problem and per_problem[0].get("ordered"):  # the order matters: keep it, as 0/1 strings
            d["search"]["ordered_verified"] = ["".join("01"[v] for v in p["verified"]) for p in per_problem]
            d["search"]["ordered_correct"] = ["".join("01"[c] for c in p["correct"]) for p in per_problem]
    return out


def unslim(saved: dict) -> dict:
    """Inverse of ``slim`` for every number the tables use: per-problem (verified, correct)
    lists rebuilt from the counts (verified@k and pass@1 depend on the counts only, not on
    which samples they were), the latency table's keys back to ints."""
    report = json.loads(json.dumps(saved))
    n = report["samples"]
    for d in report["models"].values():
        s = d["search"]
        counts = zip(s.pop("verified_counts"), s.pop("verified_correct_counts"), s.pop("correct_counts"))
        s["per_problem"] = [{"verified": [True] * v + [False] * (n - v),
                             "correct": [True] * vc + [False] * (v - vc) + [True] * (c - vc) + [False] * (n - v - c + vc)}
                            for v, vc, c in counts]
        if "ordered_verified" in s:  # stratified candidates: their drawing order
            s["per_problem"] = [{"verified": [b == "1" for b in v], "correct": [b == "1" for b in c], "ordered": True}
                                for v, c in zip(s.pop("ordered_verified"), s.pop("ordered_correct"))]
    if "latency" in report:
        report["latency"] = {m: {int(k): t for k, t in lat.items()} for m, lat in report["latency"].items()}
    return report


def save(report: dict, out_dir: Path) -> Path:
    """Write ``<out_dir>/frontier.json`` (the ``slim`` report); returns its path."""
    path = out_dir / "frontier.json"
    path.write_text(json.dumps(slim(report), indent=1))
    return path


def load(path: Path) -> dict:
    """A saved ``frontier.json`` as the report the analysis reads (``unslim``)."""
    return unslim(json.loads(path.read_text()))


def saved_accuracy(paths: list[Path] | None, args: argparse.Namespace) -> dict:
    """Per model spec, the accuracy block of saved frontier.json files (``--accuracy-from``;
    a spec in several: the last file's): the search runs are seeded, so the same spec on
    the same problems gives the same candidates; only the timings need this machine."""
    out: dict = {}
    for path in paths or []:
        if not path.exists():
            raise SystemExit(f"--accuracy-from {path}: no such file; pass a frontier.json written by this script")
        saved = load(path)
        mine = (args.problems, args.samples, args.split)
        theirs = (saved["problems"], saved["samples"], saved.get("split", "test"))
        if mine != theirs:
            raise SystemExit(f"--accuracy-from {path} measured (problems, samples, split) = {theirs}, this run asks "
                             f"{mine}; use the same --problems / --samples / --split")
        out.update({name: d["search"] for name, d in saved["models"].items()})
    return out


def reused_search(reused: dict, spec: str) -> dict | None:
    """The saved accuracy run of ``spec``, or of the same spec without ``window=``: a
    window changes which columns a call runs, never a token (``SamplerConfig.window``,
    tested), so a windowed student is timed on its unwindowed twin's candidates. A copy:
    each model's timings are written into its own."""
    name, _, overrides = spec.partition(":")
    kept = ",".join(item for item in overrides.split(",") if item and not item.startswith("window="))
    return copy.deepcopy(reused.get(spec) or reused.get(f"{name}:{kept}" if kept else name))
