"""Countdown: checker, solver, generator, splits and the public jsonl format."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from tasks import load_task
from tasks.countdown import (
    canonical_solution,
    check_solution,
    generate_problem,
    parse_input,
    solve,
)
from tasks.safe_arith import parse_equations

EXAMPLE = {"input": "15,44,79,50", "output": "44-15=29,79-29=50"}


@pytest.fixture(scope="module")
def cd3():
    return load_task("countdown", n=3, test_size=300, validation_size=100)


@pytest.fixture(scope="module")
def cd4():
    return load_task("countdown", n=4, test_size=300, validation_size=100)


def test_example_from_public_format():
    assert parse_input(EXAMPLE["input"]) == ((15, 44, 79), 50)
    assert check_solution((15, 44, 79), 50, EXAMPLE["output"])


@pytest.mark.parametrize(
    "text,ok",
    [
        ("44-15=29,79-29=50", True),
        (" 44 - 15 = 29 , 79 - 29 = 50 \n", True),   # whitespace is fine
        ("44-15=29\n79-29=50", True),                 # newline separator
        ("79-29=50,44-15=29", False),                 # 29 not available yet
        ("44-15=29,79-29=51", False),                 # wrong arithmetic
        ("44-15=30,79-30=49", False),                 # wrong arithmetic
        ("15-44=-29,79+-29=50", False),               # negatives
        ("44-15=29", False),                          # 79 unused
        ("44-15=29,79-29=50,50-0=50", False),         # too many steps / 0 not given
        ("44-15=29,29+29=58", False),                 # intermediate used twice
        ("44+44=88,88-79=9", False),                  # operand used twice
        ("44-15=29;79-29=50", False),                 # unknown separator
        ("44−15=29,79−29=50", False),                 # unicode minus
        ("44-15=29,79-29=50=50", False),
        ("(44-15)=29,79-29=50", False),
        ("", False),
    ],
)
def test_checker_table(text, ok):
    assert check_solution((15, 44, 79), 50, text) is ok


def test_exact_positive_division_only():
    assert check_solution((6, 3, 1), 2, "6/3=2,2*1=2")
    assert not check_solution((7, 2, 1), 3, "7/2=3,3*1=3")        # inexact
    assert not check_solution((5, 5, 9), 9, "5-5=0,9+0=9")          # zero intermediate
    assert not check_solution((5, 0, 9), 9, "5/0=0,9+0=9")


def test_canonical_answer_key():
    assert canonical_solution("15+44=59, 3 * 2 = 6") == canonical_solution("44+15=59,2*3=6") == "44+15=59,3*2=6"
    assert canonical_solution("44-15=29,79-29=50") == "44-15=29,79-29=50"
    assert canonical_solution("44-15=28") is None
    assert canonical_solution("15-44=0") is None
    assert canonical_solution("nonsense") is None


@pytest.mark.parametrize("n", [3, 4])
def test_generated_problems_are_solvable(n, cd3, cd4):
    task = cd3 if n == 3 else cd4
    probs = task.problems("test")
    assert len(probs) == 300
    for p in probs:
        nums, target = p.meta["numbers"], p.meta["target"]
        assert len(nums) == n and all(1 <= x <= 100 for x in nums) and 1 <= target <= 100  # the public range
        assert task.verify(p, task.format_target(p)) and task.is_correct(p, p.reference)
        sol = solve(nums, target)
        assert sol is not None and task.verify(p, sol)
        assert task.extract_answer(p.reference) is not None
    assert len({p.prompt for p in probs}) == len(probs)
    assert any(p.meta["target"] < 10 for p in probs) and any(100 in p.meta["numbers"] for p in probs)


def test_the_narrow_range_of_the_first_zoo_models_stays_an_option():
    narrow = load_task("cd3", max_operand=99, min_target=10, max_target=99, test_size=100, validation_size=10)
    assert all(10 <= p.meta["target"] <= 99 and max(p.meta["numbers"]) <= 99 for p in narrow.problems("test"))


def test_cd5_and_easy_variant():
    rng = random.Random(1)
    for _ in range(100):
        nums, target, sol = generate_problem(rng, 5)
        assert check_solution(nums, target, sol) and check_solution(nums, target, solve(nums, target))
    easy = load_task("cd3", max_operand=9, test_size=50, validation_size=20)
    for p in easy.problems("test") + easy.problems("validation"):
        assert max(p.meta["numbers"]) <= 9 and easy.verify(p, p.reference)


def test_solver_unsolvable():
    assert solve([1, 1, 1], 97) is None
    assert solve([2, 3], 7) is None
    assert solve([2, 3], 6) == "3*2=6"


def test_splits_fixed_disjoint_and_prefix_stable(cd3):
    again = load_task("countdown", n=3, test_size=300, validation_size=100)
    assert [p.prompt for p in again.problems("test", limit=20)] == [p.prompt for p in cd3.problems("test")[:20]]
    assert cd3.problems("test")[17].id == "cd3-test-000017"
    test_keys = {(tuple(sorted(p.meta["numbers"])), p.meta["target"]) for p in cd3.problems("test")}
    val_keys = {(tuple(sorted(p.meta["numbers"])), p.meta["target"]) for p in cd3.problems("validation")}
    assert not test_keys & val_keys
    with pytest.raises(ValueError, match="train_examples"):
        cd3.problems("train")


def test_train_examples_exclude_held_out():
    # a tiny problem space, so that collisions with test/validation really happen
    task = load_task("countdown", n=3, max_operand=6, min_target=10, max_target=30, test_size=40, validation_size=40)
    held = {(tuple(sorted(p.meta["numbers"])), p.meta["target"]) for s in ("test", "validation") for p in task.problems(s)}
    pairs = list(itertools.islice(task.train_examples(seed=0), 2000))
    for prompt, target in pairs:
        nums, t = parse_input(prompt)
        assert (tuple(sorted(nums)), t) not in held
        assert check_solution(nums, t, target)
    assert pairs[:50] == list(itertools.islice(task.train_examples(seed=0), 50))
    assert pairs[:50] != list(itertools.islice(task.train_examples(seed=1), 50))


def test_write_split_round_trip(tmp_path, cd3):
    f = tmp_path / "cd3_test.jsonl"
    assert cd3.write_split("test", f, limit=25) == 25
    lines = f.read_text().splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"input", "output"}
    assert lines[0] == json.dumps(first)  # exactly the public-test-set style
    loaded = load_task("countdown", n=3, path=f)
    assert [(p.prompt, p.reference) for p in loaded.problems("test")] == [
        (p.prompt, p.reference) for p in cd3.problems("test", limit=25)
    ]
    assert all(loaded.verify(p, p.reference) for p in loaded.problems("test"))
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "test.jsonl").write_text(json.dumps(EXAMPLE) + "\n")
    d = load_task("cd3", path=tmp_path / "dir")
    (p,) = d.problems("test")
    assert d.format_prompt(p) == "15,44,79,50" and d.format_target(p) == "44-15=29,79-29=50"
    assert next(d.train_examples(0))  # generator still serves training data
    with pytest.raises(ValueError, match="no validation data"):
        d.problems("validation")


def test_parse_equations_bounds():
    assert parse_equations("1+1=2," * 32) is not None
    assert parse_equations("1+1=2," * 33) is None
    assert parse_equations("1" * 18 + "+1=2") is not None
    assert parse_equations("1" * 19 + "+1=2") is None


def test_public_target_only_file_loads_as_it_is():
    """The public CD3 test set: operands in input, the target alone in output."""
    from tasks import PUBLIC_TEST_SETS

    task = load_task("countdown", n=3, path=PUBLIC_TEST_SETS["countdown-cd3"])
    problems = task.problems("test")
    assert len(problems) == 256
    first = problems[0]  # {"input": "30,100,93", "output": "23"}
    assert first.prompt == "30,100,93,23" and first.meta["numbers"] == (30, 100, 93) and first.meta["target"] == 23
    assert first.reference == ""  # no reference solution, and it still verifies
    solution = task.solve(first)
    assert solution and task.verify(first, solution) and task.is_correct(first, solution)
    assert not task.is_correct(first, "100-93=7,30-7=23x")
    assert all(task.solve(p) is not None for p in problems[:40])
    targets = [p.meta["target"] for p in problems]
    assert min(targets) < 10 and max(p for q in problems for p in q.meta["numbers"]) == 100


@pytest.mark.parametrize("lines,message", [
    (['{"input": "30,100,93", "output": "23"}'], r"bad\.jsonl:1: 3 operands, but this task has n=4; load it with n=3"),
    (['{"input": "1,2,3,4,10", "output": "1+2=3,3*3=9,9+4=13"}'], r"bad\.jsonl:1: .*valid solution"),
    (['{"input": "30,100,93,7", "output": "23"}', '{"input": "1,2,3,4,10", "output": "1+2=3,3*3=9,9+1=10"}'],
     r"bad\.jsonl:2: .*not a bare target.*one format"),
    (['{"input": "1,2,3,4,10", "output": "1+2=3,3*3=9,9+1=10,1+1=2"}', '{"input": "1,2,3", "output": "6"}'],
     r"bad\.jsonl:1: .*valid solution"),
    (['{"input": "a,b,c", "output": "6"}'], r"bad\.jsonl:1: malformed countdown input"),
    (['{"input": "1,2", "output": "3"}'], r"bad\.jsonl:1: 2 operands, but this task has n=4"),
])
def test_malformed_files_fail_in_one_line_naming_file_and_line(tmp_path, lines, message):
    f = tmp_path / "bad.jsonl"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message) as err:
        load_task("countdown", n=4, path=f).problems("test")
    assert "\n" not in str(err.value)


def test_both_formats_give_the_same_problem(tmp_path):
    solution_file, target_file = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    solution_file.write_text(json.dumps(EXAMPLE) + "\n")
    target_file.write_text(json.dumps({"input": "15,44,79", "output": "50"}) + "\n")
    (a,), (b,) = (load_task("cd3", path=f).problems("test") for f in (solution_file, target_file))
    assert (a.prompt, a.meta) == (b.prompt, b.meta) and a.reference == EXAMPLE["output"] and b.reference == ""
