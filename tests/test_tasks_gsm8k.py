"""GSM8K: data loading, all gold answers, prompts and a table of tricky completions.

These tests FAIL (never skip) when the data is missing: CI always has it at
``../shared/data/gsm8k`` (or ``$SDTT_DATA_DIR``).
"""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

import pytest

from tasks import Problem, load_task
from tasks.gsm8k import extract_flexible, extract_strict

REPO = Path(__file__).resolve().parents[1]


def gsm8k_data_dir() -> Path:
    env = os.environ.get("SDTT_DATA_DIR")
    d = Path(env) if env else REPO.parent / "shared" / "data" / "gsm8k"
    assert (d / "test.jsonl").is_file() or (d / "gsm8k" / "test.jsonl").is_file(), f"GSM8K data not found at {d}"
    return d


@pytest.fixture(scope="module")
def task():
    return load_task("gsm8k", path=gsm8k_data_dir())


def test_sizes_and_ids(task):
    test, train = task.problems("test"), task.problems("train")
    assert len(test) == 1319 and len(train) == 7473
    assert test[17].id == "gsm8k-test-0017" and train[7000].id == "gsm8k-train-7000"
    assert test[0].reference == "18" and test[0].prompt.startswith("Janet")
    assert len(task.problems("test", limit=5)) == 5


def test_env_var_is_used(monkeypatch):
    monkeypatch.setenv("SDTT_DATA_DIR", str(gsm8k_data_dir()))
    assert len(load_task("gsm8k").problems("test")) == 1319


def test_all_gold_answers_extract_and_score(task):
    for p in task.problems("test") + task.problems("train"):
        gold = p.meta["answer"]
        assert "," not in p.reference
        assert task.extract_strict(gold) == p.reference, p.id
        assert task.extract_answer(gold) == p.reference, p.id
        assert task.is_correct(p, gold), p.id
        assert task.is_correct(p, task.format_target(p)), p.id
        assert task.score(p, gold) == {"strict": True, "flexible": True}, p.id
        assert task.verify(p, gold) is None


def test_prompts_zero_and_few_shot(task):
    p = task.problems("test")[0]
    assert task.format_prompt(p) == f"Question: {p.prompt}\nAnswer:"
    assert "<<" not in task.format_target(p) and task.format_target(p).endswith("#### 18")
    k3 = load_task("gsm8k", path=gsm8k_data_dir(), shots=3, seed=7)
    prompts = [k3.format_prompt(q) for q in k3.problems("test", limit=5)]
    blocks = prompts[0].split("\n\n")
    assert len(blocks) == 4 and blocks[-1] == f"Question: {p.prompt}\nAnswer:"
    assert all(b.startswith("Question: ") and "\nAnswer: " in b and "\n#### " in b for b in blocks[:3])
    prefix = prompts[0][: -len(blocks[-1])]
    assert all(pr.startswith(prefix) for pr in prompts)  # same exemplars for every problem
    again = load_task("gsm8k", path=gsm8k_data_dir(), shots=3, seed=7)
    assert again.format_prompt(p) == prompts[0]
    other = load_task("gsm8k", path=gsm8k_data_dir(), shots=3, seed=8)
    assert other.format_prompt(p) != prompts[0]
    # an exemplar never appears as its own exemplar
    for ex in k3.exemplars():
        pr = k3.format_prompt(ex)
        assert pr.count(ex.prompt) == 1 and pr.count("Question: ") == 4


def test_train_examples(task):
    pairs = list(itertools.islice(task.train_examples(seed=0), 7473 + 10))
    assert len({pr for pr, _ in pairs[:7473]}) == len({p.prompt for p in task.problems("train")})
    assert all(pr.startswith("Question: ") and pr.endswith("\nAnswer:") and "#### " in t for pr, t in pairs)
    assert pairs[:3] == list(itertools.islice(task.train_examples(seed=0), 3))


P18 = Problem(id="t", prompt="q", reference="18")
P1000 = Problem(id="t", prompt="q", reference="1000")
PNEG = Problem(id="t", prompt="q", reference="-3")
P5 = Problem(id="t", prompt="q", reference="5")

# (problem, completion, strict, flexible, is_correct)
TRICKY = [
    (P18, "She makes 9 * 2 = $18.\n#### 18", True, True, True),
    (P18, "#### 18", True, True, True),
    (P18, "The answer is 18.", False, True, True),
    (P18, "The answer is 18", False, True, True),
    (P18, "The answer is $18.00", False, True, True),
    (P18, "So she makes 18 dollars. Then 20 more for tomorrow.", False, False, False),
    (P18, "#### 18\nQuestion: next one has 7 apples", True, False, True),  # strict first wins
    (P18, "#### 17\nactually 18", False, True, False),
    (P18, "\\boxed{18}", False, True, True),
    (P18, "so the total is \\boxed{18} and 3 were left", False, False, True),
    (P18, "\\boxed{\\frac{36}{2}}", False, False, True),
    (P18, "\\boxed{18 \\text{ dollars}}", False, True, True),
    (P18, "\\boxed{19}", False, False, False),
    (P18, "#### 18.0", True, True, True),
    (P18, "#### 018", True, True, True),
    (P18, "#### 1 8", False, False, False),
    (P18, "#### ١٨", False, False, False),  # Arabic-Indic digits are not digits
    (P18, "#### １８", False, False, False),  # fullwidth digits neither
    (P18, "####18", False, True, True),  # lm-eval strict needs the space
    (P18, "", False, False, False),
    (P1000, "#### 1,000", True, True, True),
    (P1000, "It costs $1,000.", False, True, True),
    (P1000, "#### $1,000", False, True, True),  # lm-eval strict regex has no $
    (P1000, "#### 1.000", False, False, False),
    (P1000, "#### 1000.00", True, True, True),
    (PNEG, "#### -3", True, True, True),
    (PNEG, "The change is -3.", False, True, True),
    (PNEG, "#### 3", False, False, False),
    (P5, "#### 5.0", True, True, True),
    (P5, "#### 5.00", True, True, True),
    (P5, "#### 5.5", False, False, False),
    (P5, "#### -0", False, False, False),
    (P5, "x = 5...", False, True, True),
]


@pytest.mark.parametrize("problem,text,strict,flexible,correct", TRICKY)
def test_tricky_completions(task, problem, text, strict, flexible, correct):
    assert task.score(problem, text) == {"strict": strict, "flexible": flexible}
    assert task.is_correct(problem, text) is correct


def test_extractors():
    assert extract_strict("#### 1,234\n#### 5") == "1234"
    assert extract_flexible("a 1 b 2,5 c 3.") == "3"
    assert extract_strict("#### -0.50") == "-0.5"
    assert extract_strict("#### -0") == "0"
    assert extract_flexible("no numbers") is None


def test_boxed_off_main_thread(task):
    """math-verify's signal timeout is disabled off the main thread; must not crash."""
    results = {}

    def work():
        results["frac"] = task.is_correct(P18, "\\boxed{\\dfrac{36}{2}}")
        results["pow"] = task.is_correct(P18, "\\boxed{9^{9^{9^{9}}}}")

    t = threading.Thread(target=work)
    t.start()
    t.join(30)
    assert results == {"frac": True, "pow": False}


def test_path_may_be_a_single_jsonl_file(tmp_path):
    import json

    from tasks import load_task

    file = tmp_path / "mine.jsonl"
    file.write_text(json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"}) + "\n")
    task = load_task("gsm8k", path=str(file))
    (problem,) = task.problems("test")
    assert problem.reference == "2" and task.is_correct(problem, "#### 2")
