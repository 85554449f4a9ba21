"""The synthetic GSM8K-format word problems: generator, splits, scorers."""
from __future__ import annotations

import itertools
import random
import re

import pytest

from tasks import load_task
from tasks.partial import VIOLATED, evaluate_expression
from tasks.wordproblems import ITEMS, NAMES, generate_problem

_SENTENCE = {
    "more": lambda a, c: a + c, "fewer": lambda a, c: a - c, "times": lambda a, c: a * c,
}
_FRACTION = {"half": 2, "a third": 3, "a quarter": 4, "a fifth": 5}


def answer_from_question(question: str) -> int:
    """Re-derive the answer from the question's sentences alone, in order (an independent reading)."""
    counts: dict[str, int] = {}
    for sentence in re.split(r"(?<=[.?]) ", question):
        if m := re.fullmatch(r"(\w+) has (\d+) \w+\.", sentence):
            counts[m.group(1)] = int(m.group(2))
        elif m := re.fullmatch(r"(\w+) has (\d+) (more|fewer|times) [\w ]*? (?:than|as) (\w+)\.", sentence):
            counts[m.group(1)] = _SENTENCE[m.group(3)](counts[m.group(4)], int(m.group(2)))
        elif m := re.fullmatch(r"(\w+) has (half|a third|a quarter|a fifth) as many \w+ as (\w+)\.", sentence):
            assert counts[m.group(3)] % _FRACTION[m.group(2)] == 0, "a division with a remainder"
            counts[m.group(1)] = counts[m.group(3)] // _FRACTION[m.group(2)]
        else:
            last = re.fullmatch(r"How many \w+ does (\w+) have\?", sentence).group(1)
    return counts[last]


def test_answers_are_computed_and_the_worked_solution_rederives_them():
    rng = random.Random(0)
    for ops in range(1, 9):
        for _ in range(60):
            question, worked, answer = generate_problem(rng, ops)
            assert answer_from_question(question) == answer, question
            lines = worked.splitlines()
            assert lines[-1] == f"#### {answer}" and len(lines) == ops + 1
            previous = None
            for line in lines[:-1]:
                expr, result = re.search(r"<<([^=]+)=(\d+)>>", line).groups()
                assert evaluate_expression(expr) == int(result)  # every annotation is exact
                assert "/" not in expr or int(expr.split("/")[0]) % int(expr.split("/")[1]) == 0
                if previous is not None:  # a chain: each step starts from the last result
                    assert expr.startswith(str(previous))
                previous = int(result)
                assert 0 < previous <= 999
            assert previous == answer


def test_splits_are_fixed_disjoint_and_the_training_stream_avoids_them():
    task = load_task("wordproblems", max_ops=3, test_size=200, validation_size=100)
    test, validation = task.problems("test"), task.problems("validation")
    assert len(test) == 200 and len(validation) == 100
    assert len({p.prompt for p in test}) == 200 and not {p.prompt for p in test} & {p.prompt for p in validation}
    again = load_task("wordproblems", max_ops=3, test_size=200, validation_size=100)
    assert [p.prompt for p in again.problems("test")] == [p.prompt for p in test]
    assert {p.meta["ops"] for p in test} == {1, 2, 3}
    held = {task.format_prompt(p) for p in test + validation}
    pairs = list(itertools.islice(task.train_examples(seed=1), 300))
    assert not held & {prompt for prompt, _ in pairs}
    assert pairs[:5] == list(itertools.islice(task.train_examples(seed=1), 5))
    assert pairs[:5] != list(itertools.islice(task.train_examples(seed=2), 5))
    with pytest.raises(ValueError, match="no fixed train split"):
        task.problems("train")


def test_difficulty_options_and_errors():
    hard = load_task("wordproblems", min_ops=5, max_ops=5, test_size=20)
    assert {p.meta["ops"] for p in hard.problems("test")} == {5}
    for bad, match in (({"max_ops": 0}, "max_ops"), ({"min_ops": 4, "max_ops": 2}, "min_ops <= max_ops"),
                       ({"shots": -1}, "shots"), ({"nope": 1}, "unknown option")):
        with pytest.raises(ValueError, match=match):
            load_task("wordproblems", **bad)


def test_scored_like_gsm8k_with_no_verifier():
    task = load_task("wordproblems", test_size=50)
    for p in task.problems("test"):
        gold = task.format_target(p)
        assert task.is_correct(p, gold) and task.score(p, gold) == {"strict": True, "flexible": True, "numeric": True}
        assert task.extract_answer(gold) == p.reference
        assert task.verify(p, gold) is None and not task.has_verifier
        wrong = gold.replace(f"#### {p.reference}", f"#### {int(p.reference) + 1}")
        assert not task.is_correct(p, wrong) and task.score(p, wrong)["strict"] is False
        assert task.format_prompt(p) == f"Question: {p.prompt}\nAnswer:"
    few = load_task("wordproblems", test_size=5, shots=2)
    prompt = few.format_prompt(few.problems("test")[0])
    assert prompt.count("Question: ") == 3 and prompt.count("#### ") == 2


def test_partial_check_catches_a_wrong_annotation():
    task = load_task("wordproblems", test_size=5)
    p = task.problems("test")[0]
    gold = task.format_target(p)
    assert task.partial_check(p, list(gold)).status != VIOLATED
    bad = re.sub(r"=(\d+)>>", lambda m: f"={int(m.group(1)) + 1}>>", gold, count=1)
    assert task.partial_check(p, list(bad)).status == VIOLATED


def test_vocabulary_is_small():
    """The language is a handful of templates: a word-level vocabulary stays small."""
    task = load_task("wordproblems", max_ops=6, test_size=300)
    words = {w for p in task.problems("test") for w in re.findall(r"[A-Za-z]+", p.prompt + task.format_target(p))}
    assert words <= set(NAMES) | set(ITEMS) | {
        "has", "more", "fewer", "than", "times", "as", "many", "half", "a", "third", "quarter", "fifth", "How",
        "does", "have", "Question", "Answer"}


def test_a_tiny_model_trains_distils_and_searches_end_to_end(tmp_path):
    """The pipeline on this task: pretrain a tiny diffusion model and its AR twin for a
    few steps, distil a student, and search with it from the command line (majority
    vote, no verifier), reading lm-eval's strict/flexible into metrics.json."""
    import json

    from distill import pretrain, sdtt
    from distill_fixtures import pretrain_config, sdtt_config
    from sdtt_search import run as run_module

    small = ["task=wordproblems", "task.options.max_ops=1", "task.tokenizer.vocab_size=300", "train.steps=3",
             "train.batch_size=4", "eval.problems=2", "eval.batch_size=2"]
    teacher = pretrain.run(pretrain_config(tmp_path / "teacher", *small))
    twin = pretrain.run(pretrain_config(tmp_path / "ar", *small, "objective=ar", f"tokenizer_from={teacher}"))
    sdtt.run(sdtt_config(tmp_path / "student", teacher, "steps_per_round=2", "eval.problems=2", "eval.batch_size=2"))
    student = sorted((tmp_path / "student").glob("round-*"))[-1]
    for i, model in enumerate((student, twin)):
        out = tmp_path / f"run-{i}"
        assert run_module.main(["task=wordproblems", "task.options.max_ops=1", f"model={model}", "samples=2",
                                "limit=2", "plot=false", "progress=false", f"output_dir={out}"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["task"] == "wordproblems" and "maj@2" in metrics["accuracy"]
        assert "verified@2" not in metrics["accuracy"]  # no verifier on a word problem
        assert set(metrics["scores"]) == {"strict", "flexible", "numeric"}
    # the voting benchmark reads both families side by side (temporal voting for the diffusion student)
    from benchmarks import voting

    runs = voting.main([str(student), str(twin), "--problems", "3", "--samples", "2", "--round", "1"])
    assert [r["kind"] for r in runs] == ["diffusion", "ar"]
    assert "temporal@2" in runs[0]["accuracy"] and "temporal@2" not in runs[1]["accuracy"]
    assert all(set(r["ladder"]) == {1} and r["ladder"][1]["problems"] == 3 for r in runs)
    assert all(1 <= r["settled_majority"]["samples_drawn"] <= 2 for r in runs)
