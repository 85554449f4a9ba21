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
from tasks.gsm8k import hash_number, last_number

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
        assert task.extract_answer(gold) == p.reference, p.id
        assert task.is_correct(p, gold), p.id
        assert task.is_correct(p, task.format_target(p)), p.id
        assert task.score(p, gold) == {"strict": True, "flexible": True, "numeric": True}, p.id
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
P2125 = Problem(id="t", prompt="q", reference="2125")
PM10 = Problem(id="t", prompt="q", reference="-10")
MINUS = "\u2212"

# (problem, completion, strict, flexible, numeric): strict and flexible are lm-eval's decisions
# (tests/test_tasks_gsm8k_lm_eval.py checks them against lm-eval itself), numeric is is_correct
TRICKY = [
    (P18, "She makes 9 * 2 = $18.\n#### 18", True, True, True),
    (P18, "#### 18", True, True, True),
    (P18, "The answer is 18.", False, True, True),
    (P18, "The answer is 18", False, True, True),
    (P18, "The answer is $18.00", False, False, True),  # lm-eval: "18.00" != "18"
    (P18, "So she makes 18 dollars. Then 20 more for tomorrow.", False, False, False),
    (P18, "#### 18\nQuestion: next one has 7 apples", True, True, True),  # cut at "Question:"
    (P18, "She has 18.\nQuestion: Tom has 7 apples", False, True, True),  # not scored on the next question
    (P18, "#### 17\nactually 18", False, True, False),
    (P18, "\\boxed{18}", False, True, True),
    (P18, "so the total is \\boxed{18} and 3 were left", False, False, True),
    (P18, "\\boxed{\\frac{36}{2}}", False, False, True),
    (P18, "\\boxed{18 \\text{ dollars}}", False, True, True),
    (P18, "\\boxed{19}", False, False, False),
    (P18, "#### 18.0", False, False, True),  # lm-eval compares strings
    (P18, "#### 018", False, False, True),
    (P18, "#### 1 8", False, False, False),
    (P18, "#### \u0661\u0668", False, False, False),  # Arabic-Indic digits are not digits
    (P18, "#### \uff11\uff18", False, False, False),  # fullwidth digits neither
    (P18, "####18", False, True, True),  # lm-eval strict needs the space
    (P18, "", False, False, False),
    (P18, "18 </s> #### 17", False, True, True),
    (P18, "#### 18<|im_end|>#### 17", True, True, True),
    (P1000, "#### 1,000", True, True, True),
    (P1000, "It costs $1,000.", False, True, True),
    (P1000, "#### $1,000", False, True, True),  # lm-eval strict regex has no $
    (P1000, "#### $1600.00", False, False, False),
    (P1000, "#### 1.000", False, False, False),
    (P1000, "#### 1000.00", False, False, True),
    (PNEG, "#### -3", True, True, True),
    (PNEG, "The change is -3.", False, True, True),
    (PNEG, "#### 3", False, False, False),
    (PNEG, f"#### {MINUS}3", False, False, True),  # a Unicode minus is a minus, but not to lm-eval
    (P5, "#### 5.0", False, False, True),
    (P5, "#### 5.00", False, False, True),
    (P5, "#### 5.5", False, False, False),
    (P5, "#### -0", False, False, False),
    (P5, "x = 5...", False, False, True),
    # a final box decides: never read past it to the number inside
    (P2125, "\\boxed{1 + 2125}", False, True, False),
    (P2125, "\\boxed{2 \\times 2125}", False, True, False),
    (P2125, "\\boxed{\\frac{1}{2125}}", False, True, False),
    (P2125, "\\boxed{\\sqrt{2125}}", False, True, False),
    (P2125, "\\boxed{\\frac{4250}{2}}", False, False, True),
    (P2125, "\\boxed{" + "{" * 12 + "2125" + "}" * 12 + "}", False, True, False),  # too deep to read: wrong
    (P2125, f"\\boxed{{{MINUS}2125}}", False, True, False),
    (P2125, "\\boxed{\u20132125}", False, True, False),  # en dash
    (PM10, f"\\boxed{{{MINUS}10}}", False, False, True),
    (PM10, f"The change is {MINUS}10.", False, False, True),
    (PM10, "\\boxed{\uff0d10}", False, False, True),  # fullwidth hyphen-minus
]


@pytest.mark.parametrize("problem,text,strict,flexible,numeric", TRICKY)
def test_tricky_completions(task, problem, text, strict, flexible, numeric):
    assert task.score(problem, text) == {"strict": strict, "flexible": flexible, "numeric": numeric}
    assert task.is_correct(problem, text) is numeric


def test_boxed_cases_many_golds(task):
    """A non-numeric final box is never read as the number inside it, for many golds."""
    rng = __import__("random").Random(7)
    for _ in range(200):
        g = rng.randint(1, 10**6)
        p = Problem(id="t", prompt="q", reference=str(g))
        for text in (f"\\boxed{{1 + {g}}}", f"\\boxed{{2 \\times {g}}}", f"\\boxed{{\\frac{{1}}{{{g}}}}}",
                     f"\\boxed{{\\sqrt{{{g}}}}}", f"\\boxed{{{MINUS}{g}}}", f"\\boxed{{{g} {g}}}"):
            assert not task.is_correct(p, text), text
        assert task.is_correct(p, f"\\boxed{{{g}}}") and task.is_correct(p, f"\\boxed{{\\frac{{{2 * g}}}{{2}}}}")
        neg = Problem(id="t", prompt="q", reference=str(-g))
        assert task.is_correct(neg, f"\\boxed{{{MINUS}{g}}}") and task.is_correct(neg, f"#### {MINUS}{g}")
        assert not task.is_correct(neg, f"\\boxed{{{g}}}")


def test_voting_key_reads_like_is_correct(task):
    assert task.extract_answer("\\boxed{\\frac{36}{2}}") == "18"
    assert task.extract_answer("\\boxed{1 + 2125}") is None
    assert task.extract_answer(f"\\boxed{{{MINUS}7}}") == "-7"
    assert task.extract_answer("#### 18\nQuestion: 99") == "18"
    assert task.extract_answer("it is 18\nQuestion: 99") == "18"
    assert task.extract_answer("x" * 40_000 + " 18") is None  # over the length bound: not read


def test_extractors():
    assert hash_number("#### 1,234\n#### 5") == "1234"
    assert last_number("a 1 b 2,5 c 3.") == "3"
    assert hash_number("#### -0.50") == "-0.5"
    assert hash_number("#### -0") == "0"
    assert last_number("no numbers") is None


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
