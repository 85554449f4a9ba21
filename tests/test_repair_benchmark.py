"""``python -m benchmarks.repair`` on a few problems: its rows and what they must hold."""
from __future__ import annotations

from benchmarks import repair


def test_the_repair_benchmark_compares_at_equal_forward_passes(capsys):
    rows = repair.main(["sudoku4-sdtt-4", "--problems", "3", "--samples", "2"])
    base, fixed, matched, redrawn, particles = rows
    assert base["samples"] == fixed["samples"] == particles["samples"] == 2 and base["repaired"] == 0
    assert fixed["nfe"] >= base["nfe"] and matched["nfe"] >= fixed["nfe"] and 2 <= redrawn["samples"] <= 6
    assert particles["nfe"] == base["nfe"]  # one row per call: a particle's stages add up to one decode
    out = capsys.readouterr().out
    assert "| sudoku4-sdtt-4 | best-of-2 |" in out and "| sudoku4-sdtt-4 | particles, 2 per problem" in out
    assert "CPU:" in out
