"""Partial checks of partly decoded completions (tasks.partial and each task's partial_check).

States are written one character per position, ``_`` for a masked position.
"""
from __future__ import annotations

import itertools
import random
from fractions import Fraction

import pytest

from tasks import Problem, load_task
from tasks.countdown import check_solution, partial_check as countdown_check
from tasks.gsm8k import check_annotations
from tasks.partial import CONSISTENT, UNKNOWN, VIOLATED, evaluate_expression
from tasks.sudoku import count_solutions, is_valid_solution, partial_check as sudoku_check


def pieces(state: str) -> list[str | None]:
    return [None if ch == "_" else ch for ch in state]


NUMBERS, TARGET = (15, 44, 79), 50

COUNTDOWN = [  # (state, ended, status, blame)
    ("44-15=29,79-29=50", True, CONSISTENT, ()),
    ("44-15=29,79-29=5_", False, CONSISTENT, ()),  # the last number may go on
    ("________________", False, UNKNOWN, ()),
    ("44-1_=29", False, UNKNOWN, ()),  # the only equation has a hole
    ("44-15=28,_______", False, VIOLATED, tuple(range(8))),  # wrong arithmetic
    ("44-15=29,79-28=51", True, VIOLATED, tuple(range(9, 17))),  # 28 was never made
    ("44-15=29,44-29=15", True, VIOLATED, tuple(range(9, 17))),  # 44 used twice
    ("44+15=59,79-59=20", True, VIOLATED, tuple(range(17))),  # ends off the target
    ("44-15=29,79-29=50,1+1=2", True, VIOLATED, tuple(range(18, 23))),  # a third equation
    ("15-44=-29,______", False, VIOLATED, tuple(range(9))),  # a negative result does not parse
    ("44/15=2,________", False, VIOLATED, tuple(range(7))),  # inexact division
    ("____=29,79-29=50", True, CONSISTENT, ()),  # the first equation is unseen: availability unknown
    ("__,79-28=51", True, CONSISTENT, ()),  # 28 may come from the masked part
    ("44-15=29,79-29=50", False, CONSISTENT, ()),  # not ended: a longer number may follow
    ("44x", False, VIOLATED, (2,)),
    ("44-15=29,,_____", False, VIOLATED, ()),  # an empty equation between two commas
]


@pytest.mark.parametrize("state,ended,status,blame", COUNTDOWN)
def test_countdown_partial_states(state, ended, status, blame):
    verdict = countdown_check(NUMBERS, TARGET, pieces(state), ended)
    assert verdict.status == status, verdict
    if blame or status != VIOLATED:
        assert verdict.blame == blame, verdict


def test_countdown_checks_multi_character_tokens_and_blames_their_positions():
    # number-level tokens: one position per number / operator
    state = ["44", "-", "15", "=", "28", ",", None, None]
    verdict = countdown_check(NUMBERS, TARGET, state)
    assert verdict.status == VIOLATED and verdict.blame == (0, 1, 2, 3, 4)
    assert countdown_check(NUMBERS, TARGET, ["44", "-", "15", "=", "29", ",", None]).status == CONSISTENT


def test_countdown_never_flags_a_prefix_of_a_valid_solution():
    """Masking any positions of valid solutions never gives 'violated' (no false alarms)."""
    task = load_task("countdown", n=3)
    rng = random.Random(3)
    for problem in task.problems("test", limit=60):
        solution = task.solve(problem)
        assert check_solution(problem.meta["numbers"], problem.meta["target"], solution)
        for _ in range(20):
            state = [ch if rng.random() < 0.6 else None for ch in solution]
            for ended in (False, True):
                verdict = task.partial_check(problem, state, ended=ended and state[-1] is not None)
                assert verdict.status != VIOLATED, (solution, state, verdict)


def test_countdown_flags_every_single_wrong_digit_once_the_equation_is_complete():
    task = load_task("countdown", n=3)
    for problem in task.problems("test", limit=30):
        solution = task.solve(problem)
        result_digit = solution.index("=") + 1  # the first result's first digit
        wrong = solution[:result_digit] + str((int(solution[result_digit]) + 1) % 10) + solution[result_digit + 1:]
        verdict = task.partial_check(problem, list(wrong), ended=True)
        assert verdict.status == VIOLATED and result_digit in verdict.blame


PUZZLE, SOLUTION = "3102200002100320", "3142243142131324"

SUDOKU = [
    (SOLUTION, CONSISTENT, ()),
    ("3_4_______1_____", CONSISTENT, ()),
    ("________________", UNKNOWN, ()),
    ("31________4_____", VIOLATED, (10,)),  # contradicts the given 1
    ("3132____________", VIOLATED, (2,)),  # 3 twice in row 0 (the given at 0 is not blamed)
    ("_1_1____________", VIOLATED, (3,)),  # repeats the given 1 in its row
    ("__4___4_________", VIOLATED, (2, 6)),  # two committed 4s in one column
    ("__5_____________", VIOLATED, (2,)),  # not a digit of a 4x4 grid
    ("__x_____________", VIOLATED, (2,)),
]


@pytest.mark.parametrize("state,status,blame", SUDOKU)
def test_sudoku_partial_states(state, status, blame):
    verdict = sudoku_check(PUZZLE, 4, pieces(state))
    assert verdict.status == status and verdict.blame == blame, verdict


def test_sudoku_finds_a_cell_left_without_a_digit():
    # row 0 of 0000/.../...: commit 1, 2, 3 in row 0 and 4 below cell 3: cell 3 has no digit left
    puzzle = "0" * 16
    state = ["1", "2", "3", None, None, None, None, "4"] + [None] * 8
    verdict = sudoku_check(puzzle, 4, state)
    assert verdict.status == VIOLATED and verdict.blame == (0, 1, 2, 7), verdict


def test_sudoku_never_flags_a_partial_valid_completion():
    task = load_task("sudoku", size=4)
    rng = random.Random(5)
    for problem in task.problems("test", limit=40):
        for _ in range(10):
            state = [ch if rng.random() < 0.5 else None for ch in problem.reference]
            assert task.partial_check(problem, state).status != VIOLATED


def test_sudoku_violated_means_no_valid_completion():
    """Brute force over all fillings of a few holes: 'violated' iff no filling is valid."""
    rng = random.Random(11)
    task = load_task("sudoku", size=4)
    for problem in task.problems("test", limit=15):
        for _ in range(6):
            cells = list(problem.reference)
            blanks = [i for i, ch in enumerate(problem.prompt) if ch == "0"]
            for i in rng.sample(blanks, 2):
                cells[i] = rng.choice("1234")
            holes = rng.sample(range(16), 3)
            state = [None if i in holes else cells[i] for i in range(16)]
            fillable = any(
                is_valid_solution(g, 4) and all(p == "0" or p == c for p, c in zip(problem.prompt, g))
                for g in ("".join(d if s is None else s for s, d in zip(state, fill_at(holes, digits)))
                          for digits in itertools.product("1234", repeat=3)))
            verdict = task.partial_check(problem, state)
            if verdict.status == VIOLATED:
                assert not fillable, (state, verdict)
    assert count_solutions(PUZZLE, 4, 3) >= 1


def fill_at(holes: list[int], digits: tuple[str, ...]) -> list[str]:
    out = [""] * 16
    for i, d in zip(holes, digits):
        out[i] = d
    return out


def test_gsm8k_annotations():
    assert check_annotations(pieces("She has <<2*3=6>>6 and <<6/4=1.5>>1.5 left")).status == CONSISTENT
    verdict = check_annotations(pieces("x <<2*3=7>>7 then"))
    assert verdict.status == VIOLATED and verdict.blame == tuple(range(2, 11))
    assert check_annotations(pieces("<<2*3=6")).status == UNKNOWN  # not closed yet
    assert check_annotations(pieces("<<2*_=6>>")).status == UNKNOWN  # a hole inside
    assert check_annotations(pieces("<<(2+3)*4=20>> <<1,000/4=250>>")).status == CONSISTENT
    assert check_annotations(pieces("<<10/0=1>>")).status == UNKNOWN  # unreadable: skipped, not blamed
    task = load_task("gsm8k", path=_gsm8k_dir())
    assert task.partial_check(Problem(id="t", prompt="q", reference="6"), pieces("<<2*3=5>>")).violated


def _gsm8k_dir():
    from test_tasks_gsm8k import gsm8k_data_dir

    return gsm8k_data_dir()


def test_expression_evaluator_is_exact_and_bounded():
    assert evaluate_expression("2*3+4") == 10 and evaluate_expression("(2+3)*4") == 20
    assert evaluate_expression("1/3") == Fraction(1, 3) and evaluate_expression("-2*-3") == 6
    assert evaluate_expression("0.1+0.2") == Fraction(3, 10)
    for bad in ("2**3", "9" * 19, "(" * 9 + "1" + ")" * 9, "1e9", "__import__('os')", "1/0", "2+", "", "1" * 81,
                "\u0661+1", "()", "2 3"):
        assert evaluate_expression(bad) is None, bad


HOSTILE = ["__import__('os').system('x')", "9" * 5000, "\x00" * 100, "<<" * 1000 + ">>" * 1000,
           "<<9**9**9=1>>", "1" * 40000, "\u0661\u0662", "(" * 500]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_partial_text_is_never_a_crash(text, monkeypatch):
    import os

    monkeypatch.setattr(os, "system", lambda *a: pytest.fail("model text ran code"))
    for state in (list(text), [text], [text, None], [None] * 5 + [text]):
        for verdict in (countdown_check(NUMBERS, TARGET, state, True), sudoku_check(PUZZLE, 4, state),
                        check_annotations(state)):
            assert verdict.status in (VIOLATED, CONSISTENT, UNKNOWN)
    assert countdown_check(NUMBERS, TARGET, "not a list").status == UNKNOWN
    assert countdown_check(NUMBERS, TARGET, [1, 2]).status == UNKNOWN
    assert load_task("countdown", n=3).partial_check(Problem(id="t", prompt="bad", reference=""), ["1"]).status == UNKNOWN
