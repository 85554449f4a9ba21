"""``tasks.sudoku.fill_singles`` and ``python -m benchmarks.sudoku_order``."""
import pytest

from benchmarks import sudoku_order
from tasks.sudoku import SudokuTask, agrees_with, fill_singles, is_valid_solution

# 3 2 . . / . 1 3 . / . . . 1 / 1 . . .  : the third cell of the first row may be 1 or 4 when
# it is reached in reading order, but the singles elsewhere settle it (4).
STUCK_LEFT_TO_RIGHT = "3200013000011000"
ITS_SOLUTION = "3214413223411423"


def test_a_left_to_right_singles_writer_gets_stuck_where_an_any_order_one_finishes():
    assert fill_singles(STUCK_LEFT_TO_RIGHT, 4, "reading") is None
    assert fill_singles(STUCK_LEFT_TO_RIGHT, 4, "any") == ITS_SOLUTION


def test_a_puzzle_of_singles_in_reading_order_is_finished_by_both():
    puzzle = "0" + ITS_SOLUTION[1:]  # one blank, a single from its row
    assert fill_singles(puzzle, 4, "reading") == fill_singles(puzzle, 4, "any") == ITS_SOLUTION


def test_finished_grids_are_valid_completions_and_reading_order_never_beats_any_order():
    for problem in SudokuTask(size=9, givens=40, test_size=30).problems("test"):
        reading, anywhere = (fill_singles(problem.prompt, 9, o) for o in ("reading", "any"))
        for grid in (reading, anywhere):
            assert grid is None or (is_valid_solution(grid, 9) and agrees_with(problem.prompt, grid))
        assert reading is None or anywhere == reading


@pytest.mark.parametrize("bad", ["", "12", "x" * 16, "1" * 16, None, "３" * 16])
def test_malformed_or_contradictory_puzzles_give_none(bad):
    assert fill_singles(bad, 4, "any") is None and fill_singles(bad, 4, "reading") is None


def test_an_unknown_order_is_a_one_line_error():
    with pytest.raises(ValueError, match="order must be one of reading, any"):
        fill_singles(STUCK_LEFT_TO_RIGHT, 4, "backwards")


def test_the_benchmark_reports_both_orders_per_number_of_givens(tmp_path):
    rows = sudoku_order.main(["--size", "4", "--givens", "6", "10", "--puzzles", "20", "--out", str(tmp_path)])
    assert [r["givens"] for r in rows] == [6, 10] and all(r["puzzles"] == 20 for r in rows)
    assert all(0.0 <= r["reading"] <= r["any"] <= 1.0 for r in rows)
    assert rows[1]["any"] == 1.0  # 10 of 16 cells given: singles always finish
    assert "| 6 | 20 |" in (tmp_path / "sudoku_order.md").read_text()
