"""The target-comparison benchmark finds a distillation run's round checkpoints."""
from __future__ import annotations

import pytest

from benchmarks import sdtt_target


def test_rounds_are_listed_most_steps_first(tmp_path):
    for name in ("round-2-steps-4", "round-1-steps-8", "round-3-steps-2", "logs"):
        (tmp_path / name).mkdir()
    (tmp_path / "round-9-steps-1.txt").write_text("not a checkpoint")
    assert [(s, p.name) for s, p in sdtt_target.rounds(tmp_path)] == [
        (8, "round-1-steps-8"), (4, "round-2-steps-4"), (2, "round-3-steps-2")]


def test_a_directory_without_rounds_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="no round-<r>-steps-<s> checkpoint"):
        sdtt_target.rounds(tmp_path)
