"""``python -m benchmarks.native_search`` on a few problems: both families, every search, both regimes."""
from __future__ import annotations

import pytest

from benchmarks import native_search


def test_every_search_of_both_families_in_both_regimes(capsys):
    rows = native_search.main(["sudoku4-sdtt-2", "sudoku4-ar:ar_backend=transformers", "--problems", "3",
                               "--latency-problems", "2", "--samples", "2", "--round", "1", "--ar-every", "6"])
    labels = [(r["kind"], r["search"].split(",")[0] + (" stratified" if "stratified" in r["search"] else ""))
              for r in rows]
    assert labels == [("diffusion", "best-of-2"), ("diffusion", "verify-and-stop"),
                      ("diffusion", "verify-and-stop stratified"), ("diffusion", "particles"),
                      ("diffusion", "repair"), ("diffusion", "order search"), ("ar", "best-of-2"),
                      ("ar", "verify-and-stop"), ("ar", "verify-and-stop stratified"), ("ar", "particles"),
                      ("ar", "a beam over prefixes of 2")]
    for r in rows:
        assert 0 <= r["many"]["solved"] <= r["many"]["pass"] <= 1 and r["many"]["ms_per_problem"] > 0
        assert 1 <= r["many"]["samples"] <= 2 and "one" in r
    out = capsys.readouterr().out
    assert "Equal wall time, many problems at a time" in out and "CPU:" in out


def test_ar_models_may_draw_more_candidates_than_diffusion_models(capsys):
    rows = native_search.main(["sudoku4-sdtt-2", "sudoku4-ar:ar_backend=transformers", "--problems", "3",
                               "--latency-problems", "0", "--samples", "2", "--ar-samples", "5", "--stratify", "0"])
    best = {r["kind"]: r for r in rows if r["search"].startswith("best-of")}
    assert best["diffusion"]["search"] == "best-of-2" and best["diffusion"]["many"]["samples"] == 2
    assert best["ar"]["search"] == "best-of-5" and best["ar"]["many"]["samples"] == 5
    assert all(r["n"] == (5 if r["kind"] == "ar" else 2) for r in rows)
    assert "N = 2 (AR: 5)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--ar-samples"):
        native_search.main(["sudoku4-sdtt-2", "--ar-samples", "-1"])


def test_a_task_without_a_verifier_is_sent_to_the_voting_benchmark():
    with pytest.raises(SystemExit, match="benchmarks.voting"):
        native_search.main(["gsm8k-sdtt", "--problems", "1"])


def test_coverage_counts_what_each_search_solves_beyond_k_independent_samples():
    rows = native_search.main(["sudoku4-sdtt-2", "--problems", "4", "--latency-problems", "0", "--samples", "2",
                               "--coverage", "4"])
    for r in rows:
        assert r["beyond"]["k"] == 4 and 0 <= r["beyond"]["solved"] <= r["beyond"]["never_solved"] <= 4
