"""``python -m benchmarks.learning_curve`` on two zoo twins and a few problems."""
from __future__ import annotations

import pytest

from benchmarks import learning_curve


def test_twins_pair_up_by_step_and_each_family_decodes_its_own_ways(capsys):
    rows = learning_curve.main(["sudoku4-sdtt-2", "sudoku4-ar", "--problems", "3", "--samples", "2",
                                "--split", "test", "--decodings", "ancestral", "margin"])
    assert [(r["kind"], r["decoding"]) for r in rows] == [("diffusion", "ancestral"), ("diffusion", "margin"),
                                                          ("ar", "left to right")]
    for r in rows:
        assert 0 <= r["pass@1"] <= r["verified@2"] <= 1 and r["ms_per_sample"] > 0
    out = capsys.readouterr().out
    assert "best decoding" in out and "CPU:" in out


def test_an_unknown_decoding_is_a_one_line_error():
    with pytest.raises(SystemExit, match="unknown decoding"):
        learning_curve.main(["sudoku4-sdtt-2", "--problems", "1", "--samples", "1", "--split", "test",
                             "--decodings", "spiral"])


def test_consistent_share_is_the_partial_checks_verdict_with_the_last_step_open():
    from types import SimpleNamespace

    from tasks import load_task

    task = load_task("countdown", n=3)
    problem = task.problems("test", limit=1)[0]
    solution = task.solve(problem)
    first, rest = solution.split(",", 1)
    a, op_b = first.split("=")[0], first.split("=")[1]
    wrong = f"{a}={int(op_b) + 1},{rest}"  # the first equation's arithmetic broken
    open_last = solution.rsplit("=", 1)[0] + "=1"  # only the last equation wrong: still consistent
    cands = [SimpleNamespace(text=t) for t in (solution, wrong, open_last)]
    share = learning_curve.consistent_share(task, [problem], [SimpleNamespace(id=problem.id, candidates=cands)])
    assert share == 2 / 3


def test_a_saved_run_is_resumed_snapshot_by_snapshot(tmp_path, monkeypatch):
    args = ["sudoku4-sdtt-2", "--problems", "2", "--samples", "2", "--split", "test", "--decodings", "margin",
            "--out", str(tmp_path)]
    first = learning_curve.main(args)
    measured = []
    real = learning_curve.measure
    monkeypatch.setattr(learning_curve, "measure", lambda path, *a: measured.append(path) or real(path, *a))
    again = learning_curve.main(args[:1] + ["sudoku4-ar"] + args[1:])
    assert measured == ["sudoku4-ar"] and again[: len(first)] == first
    other = learning_curve.main(args[:4] + ["3"] + args[5:])  # other samples: nothing reused
    assert measured == ["sudoku4-ar", "sudoku4-sdtt-2"] and len(other) == 1


def test_sudoku_rows_carry_the_share_of_cells_filled_right():
    rows = learning_curve.main(["sudoku4-ar", "--problems", "2", "--samples", "2", "--split", "test"])
    cells = rows[0]["scores"]["cell_accuracy"]
    assert 0.0 <= cells <= 1.0 and rows[0]["scores"]["correct"] == rows[0]["pass@1"]
    table = learning_curve.markdown(rows, 2, 2, "test", "sudoku", "cpu")
    assert "cells right" in table and f"{cells:.3f}" in table
