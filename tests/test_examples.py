"""The examples run (on tiny settings) and print their tables."""
from __future__ import annotations

from ar_fixtures import tiny_ar
from scripts import load_script


def _module(name: str):
    return load_script("examples", name)


def test_api_best_of_n_example(capsys):
    _module("api_best_of_n").main("sudoku4-sdtt-2", 2, 2)
    out = capsys.readouterr().out
    assert "selected:" in out and "pass@1" in out


def test_student_vs_ar_example(tmp_path, capsys):
    tiny_ar(tmp_path / "ar", task={"name": "sudoku", "options": {"size": 4}}, gen_length=17)
    _module("student_vs_ar").main("sudoku4-sdtt-2", str(tmp_path / "ar"), 2, 2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(lines) == 3 and "| diffusion |" in lines[1] and "| ar |" in lines[2]


def test_verify_and_stop_example(capsys):
    _module("verify_and_stop").main("sudoku4-sdtt-2", 8, 2, 6)
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| all") or
            line.startswith("| verify")]
    (full, stopped) = rows
    assert float(stopped[1]) == float(full[1])  # a prefix of the full run that holds a verified answer when it has one
    assert float(stopped[2]) < 8  # the 2-step student's samples mostly verify: it stops early


def test_cascade_example():
    student, ar, cascade = _module("cascade").main("sudoku4-sdtt-2", "sudoku4-ar", 1, 1, 4, 8, 12)
    # the cascade's first stage is the student alone (same seeds): it solves at least as much, and passes on
    # exactly the problems the student left unverified
    assert cascade["accuracy"] >= student["accuracy"] and student["reached_ar"] == 0 == ar["reached_ar"]
    assert 0 < cascade["reached_ar"] <= 1 - student["accuracy"] + 1e-9
    assert cascade["samples"] >= student["samples"] and student["samples"] == 1


def test_stratified_example():
    rows = _module("stratified").main("countdown-cd3-num-sdtt-4", 3, 8, 12)
    plain, stratified = rows["independent"], rows["stratify=3"]
    assert 0 < plain["pass@1"] <= 1 and 0 < stratified["pass@1"] <= 1
    for row in (plain, stratified):
        assert row["distinct@1"] == 1 and all(row[f"verified@{k}"] <= row[f"verified@{2 * k}"] for k in (1, 2, 4))
    # eight candidates split the first choices' mass: more distinct first tokens than eight independent draws
    assert stratified["distinct@8"] > plain["distinct@8"]


def test_hot_head_example():
    rows = _module("hot_head").main("countdown-cd3-num-sdtt-4", 3, 1.3, 8, 12)
    plain, hot, cascade = rows["plain"], rows["hot head"], rows["cascade"]
    assert 0 < hot["pass@1"] <= 1 and 0 < plain["pass@1"] <= 1
    # the cascade's first stage draws the plain search's first candidates (same seeds), at most 4
    assert cascade["verified"] >= plain["first4"] - 1e-9
    assert 1 <= cascade["samples"] <= 4 + 8


def test_fast_dllm_example():
    rows = _module("fast_dllm").main("sudoku4-teacher", 2, 6)
    assert list(rows) == ["blocks", "blocks + dual cache", "threshold 0.9", "threshold 0.9 + dual cache (Fast-dLLM)"]
    assert all(0 <= r["pass@1"] <= 1 and 0 <= r["verified"] <= 1 for r in rows.values())
    # the cache changes what a call costs, not how many calls the steps take
    assert rows["blocks + dual cache"]["calls"] == rows["blocks"]["calls"]
    assert rows["threshold 0.9"]["calls"] < rows["blocks"]["calls"]  # several tokens per step


def test_voting_example(capsys):
    _module("voting").main(["--model", "wordproblems-sdtt-37", "--samples", "2", "--limit", "3"])
    out = capsys.readouterr().out
    assert "wordproblems problems x 2 samples" in out and "temporal@2" in out and "settled majority" in out
