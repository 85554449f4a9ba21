"""``python -m benchmarks.repair`` on a few problems: its rows and what they must hold."""
from __future__ import annotations

from benchmarks import repair


def test_the_repair_benchmark_compares_at_equal_forward_passes(capsys):
    rows = repair.main(["sudoku4-sdtt-4", "--problems", "3", "--samples", "1"])
    base, fixed, matched, redrawn = rows
    assert base["samples"] == fixed["samples"] == 1 and base["repaired"] == 0
    assert fixed["nfe"] >= base["nfe"] and matched["nfe"] >= fixed["nfe"] and 1 <= redrawn["samples"] <= 3
    out = capsys.readouterr().out
    assert "| sudoku4-sdtt-4 | best-of-1 |" in out and "CPU:" in out
