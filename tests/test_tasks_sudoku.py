"""Sudoku: generator uniqueness, verifier, extraction and file formats."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from tasks import load_task
from tasks.sudoku import BOX_SHAPES, SIZES, _UNITS, agrees_with, count_solutions, is_valid_solution, random_solution


@pytest.fixture(scope="module")
def s4():
    return load_task("sudoku", size=4, test_size=200, validation_size=50)


@pytest.fixture(scope="module")
def s6():
    return load_task("sudoku", size=6, test_size=60, validation_size=20)


@pytest.fixture(scope="module")
def s9():
    return load_task("sudoku", size=9, test_size=30, validation_size=10)


@pytest.mark.parametrize("which", ["s4", "s6", "s9"])
def test_generated_puzzles_unique_and_verified(which, request):
    task = request.getfixturevalue(which)
    size = task.size
    probs = task.problems("test")
    assert len(probs) == task.options["test_size"]
    for p in probs:
        assert len(p.prompt) == size * size and p.meta["givens"] == task.options["givens"]
        assert sum(ch != "0" for ch in p.prompt) == task.options["givens"]
        assert count_solutions(p.prompt, size, limit=2) == 1
        assert is_valid_solution(p.reference, size) and agrees_with(p.prompt, p.reference)
        assert task.verify(p, task.format_target(p)) and task.is_correct(p, p.reference)
    assert len({p.prompt for p in probs}) == len(probs)
    assert probs[3].id == f"sudoku{size}-test-000003"
    val = {p.prompt for p in task.problems("validation")}
    assert not val & {p.prompt for p in probs}


def test_default_givens():
    assert load_task("sudoku4").options["givens"] == 8
    assert load_task("sudoku6").options["givens"] == 14
    assert load_task("sudoku9").options["givens"] == 36
    hard = load_task("sudoku", size=9, givens=28, test_size=3)
    assert all(count_solutions(p.prompt, 9) == 1 for p in hard.problems("test"))


def test_extract_and_verify(s9):
    p = s9.problems("test", limit=1)[0]
    sol = p.reference
    grid_text = "\n".join(" ".join(sol[r * 9 : r * 9 + 9]) for r in range(9))
    assert s9.extract_answer(grid_text) == sol
    assert s9.extract_answer("Solution:\n" + sol + "\nthanks 12") == sol
    assert s9.extract_answer(sol + "1") is None  # 82 digits: not a run of exactly 81
    assert s9.verify(p, grid_text) and s9.is_correct(p, grid_text)
    # a valid grid that breaks a given: relabel two digits
    swapped = sol.translate(str.maketrans("12", "21"))
    assert is_valid_solution(swapped, 9)
    assert not s9.verify(p, swapped) and not s9.is_correct(p, swapped)
    # a grid that agrees with the givens but is invalid
    blanks = [i for i, ch in enumerate(p.prompt) if ch == "0"]
    bad = list(sol)
    bad[blanks[0]] = str(int(bad[blanks[0]]) % 9 + 1)
    assert not s9.verify(p, "".join(bad))
    assert not s9.verify(p, p.prompt)  # blanks are not a solution
    assert not s9.verify(p, sol.replace("1", "١"))  # Arabic-Indic digit


@pytest.mark.parametrize("size", [4, 6, 9])
def test_every_unit_of_each_size_is_a_row_column_or_box(size):
    units = _UNITS[size]
    assert len(units) == 3 * size and all(len(u) == size and len(set(u)) == size for u in units)
    # every cell lies in exactly one row, one column and one box
    assert all(sum(i in u for u in units) == 3 for i in range(size * size))
    h, w = BOX_SHAPES[size]
    first_box = units[2 * size]
    assert first_box == [r * size + c for r in range(h) for c in range(w)]


def test_6x6_boxes_are_two_rows_by_three_columns(s6):
    # a grid valid with 3x2 boxes but not with 2x3 boxes is rejected
    grid = "123456" "456123" "231564" "564231" "312645" "645312"
    assert is_valid_solution(grid, 6)
    rows = [grid[r * 6:(r + 1) * 6] for r in range(6)]
    transposed = "".join("".join(rows[r][c] for r in range(6)) for c in range(6))
    assert not is_valid_solution(transposed, 6)
    p = s6.problems("test", limit=1)[0]
    sol = p.reference
    assert s6.extract_answer("\n".join(" ".join(sol[r * 6:(r + 1) * 6]) for r in range(6))) == sol
    assert s6.extract_answer(sol + "1") is None  # 37 digits: not a run of exactly 36
    assert s6.verify(p, sol) and not s6.verify(p, sol.translate(str.maketrans("12", "21")))


def test_random_grids_of_each_size_are_valid_and_varied():
    rng = random.Random(0)
    for size in SIZES:
        grids = {random_solution(rng, size) for _ in range(200)}
        assert all(is_valid_solution(g, size) for g in grids) and len(grids) > 60


def test_train_examples(s4):
    held = {p.prompt for s in ("test", "validation") for p in s4.problems(s)}
    pairs = list(itertools.islice(s4.train_examples(seed=3), 300))
    assert all(prompt not in held for prompt, _ in pairs)
    assert all(is_valid_solution(t, 4) and agrees_with(p, t) and count_solutions(p, 4) == 1 for p, t in pairs)
    assert pairs[:5] == list(itertools.islice(s4.train_examples(seed=3), 5))


def test_file_formats(tmp_path, s4):
    probs = s4.problems("test", limit=5)
    j = tmp_path / "s.jsonl"
    j.write_text("".join(json.dumps({"input": p.prompt, "output": p.reference}) + "\n" for p in probs))
    c = tmp_path / "s.csv"
    c.write_text("quizzes,solutions\n" + "".join(f"{p.prompt.replace('0', '.')},{p.reference}\n" for p in probs))
    for f in (j, c):
        t = load_task("sudoku", size=4, path=f)
        assert [(q.prompt, q.reference) for q in t.problems("test")] == [(p.prompt, p.reference) for p in probs]
    bad = tmp_path / "bad.csv"
    bad.write_text("quizzes,solutions\n" + f"{probs[0].prompt},{probs[0].reference}\n" + "1234,1234\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: malformed 4x4 sudoku"):
        load_task("sudoku", size=4, path=bad).problems("test")
    badj = tmp_path / "bad.jsonl"
    badj.write_text(json.dumps({"input": probs[0].prompt, "output": probs[1].reference}) + "\n")
    if not agrees_with(probs[0].prompt, probs[1].reference):
        with pytest.raises(ValueError, match=r"bad\.jsonl:1:"):
            load_task("sudoku", size=4, path=badj).problems("test")


def test_4x4_training_stream_starts_although_held_out_splits_use_every_grid():
    """4x4 has only 288 solution grids; holding out grids would starve the stream."""
    import itertools

    from tasks import load_task

    task = load_task("sudoku", size=4)
    held = {p.prompt for split in ("test", "validation") for p in task.problems(split)}
    pairs = list(itertools.islice(task.train_examples(0), 200))
    assert len(pairs) == 200 and not any(p in held for p, _ in pairs)


def test_public_4x4_csv_loads_and_any_valid_completion_is_correct():
    """The public 4x4 test set (header Puzzle,Solution; 124 of 500 puzzles have several
    solutions): a valid completion other than the listed one is correct, and the score
    says whether it matches the listed one and its cell accuracy."""
    from tasks import PUBLIC_TEST_SETS

    task = load_task("sudoku", size=4, path=PUBLIC_TEST_SETS["sudoku-4x4"])
    problems = task.problems("test")
    assert len(problems) == 500 and all(p.meta["givens"] == 8 for p in problems)
    several = [p for p in problems if count_solutions(p.prompt, 4, 2) == 2]
    assert len(several) == 124
    p = several[0]
    other = next(g for g in _all_solutions(p.prompt) if g != p.reference)
    assert task.is_correct(p, other) and task.verify(p, other)
    score = task.score(p, other)
    blanks = [i for i, ch in enumerate(p.prompt) if ch == "0"]
    assert score["correct"] == 1.0 and score["matches_reference"] == 0.0
    assert score["cell_accuracy"] == sum(other[i] == p.reference[i] for i in blanks) / len(blanks) < 1.0
    assert task.score(p, p.reference) == {"correct": 1.0, "matches_reference": 1.0, "cell_accuracy": 1.0}
    wrong = p.reference[:-1] + ("1" if p.reference[-1] != "1" else "2")
    assert not task.is_correct(p, wrong) and task.score(p, "no grid") == {
        "correct": 0.0, "matches_reference": 0.0, "cell_accuracy": 0.0}


def _all_solutions(puzzle: str) -> list[str]:
    """Every valid completion of a 4x4 puzzle, by brute force over the 288 grids' digits."""
    import itertools

    blanks = [i for i, ch in enumerate(puzzle) if ch == "0"]
    out = []
    for digits in itertools.product("1234", repeat=len(blanks)):
        grid = list(puzzle)
        for i, d in zip(blanks, digits):
            grid[i] = d
        grid = "".join(grid)
        if is_valid_solution(grid, 4):
            out.append(grid)
    return out


def test_csv_headers(tmp_path):
    rows = "3102200002100320,3142243142131324\n"
    for header in ("Puzzle,Solution", "quizzes,solutions", "puzzle,solution"):
        f = tmp_path / "s.csv"
        f.write_text(header + "\n" + rows)
        assert load_task("sudoku", size=4, path=f).problems("test")[0].reference == "3142243142131324"
    f.write_text("grid,answer\n" + rows)
    with pytest.raises(ValueError, match=r"s\.csv:1: malformed csv: expected the header"):
        load_task("sudoku", size=4, path=f).problems("test")
