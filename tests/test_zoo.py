"""The shipped models load, carry a card, sample, and are the run defaults."""
from __future__ import annotations

import json
import os
import re

import pytest

from sdtt_search.cli import task_from_config
from sdtt_search.loading import load_model
from sdtt_search.zoo import DEFAULT_MODELS, ZOO_DIR, available_models, default_model_for

GSM8K_DIR = os.environ.get("SDTT_DATA_DIR") or str(ZOO_DIR.parents[2] / "shared" / "data" / "gsm8k")
# the Countdown CD3 and Sudoku 4x4 models: tasks with an exact verifier, on which each is measured
SEARCH_TASK_MODELS = [n for n in available_models() if n.startswith(("countdown-cd3-", "sudoku4-"))]


def test_zoo_is_small_and_complete():
    names = available_models()
    assert {"sudoku4-sdtt-4", "countdown-cd3-num-sdtt-4", "gsm8k-sdtt"} <= set(names)
    assert {"sudoku4-sdtt-4", "countdown-cd3-num-sdtt-8", "countdown-cd3-ar"} <= set(SEARCH_TASK_MODELS)
    total = sum(f.stat().st_size for f in ZOO_DIR.rglob("*") if f.is_file())
    assert total < 100 * 10**6  # the zoo may grow to 100 MB in all
    for name in names:
        card = (ZOO_DIR / name / "MODEL.md").read_text()
        assert "Reproduce:" in card and "| pass@1 |" in card, name
        json.loads((ZOO_DIR / name / "metrics.json").read_text())


@pytest.mark.parametrize("name", available_models())
def test_zoo_model_loads_and_samples(name):
    model = load_model(name)
    meta_task = dict(model.meta["task"])
    if meta_task["name"] == "gsm8k":
        meta_task["path"] = GSM8K_DIR
    task = task_from_config(meta_task)
    problems = task.problems("test", limit=2)
    out = model.generate([task.format_prompt(p) for p in problems], model.default_sampler(), seeds=[0, 1])
    sampler = model.default_sampler()
    # at most steps (+1: the ancestral sampler's final denoising) network calls, with or without a threshold
    assert len(out.texts) == 2 and out.nfe <= sampler.steps + 1


def _sampled_and_carded_pass1(name: str, model, limit: int, repeats: int, score: str = "verify") -> tuple[float, float]:
    """(pass@1 of ``model`` at its default decoding on the first ``limit`` test problems x
    ``repeats`` seeded samples, scored by ``task.<score>``; the pass@1 its card measured)."""
    task = task_from_config(model.meta["task"])
    problems = [p for p in task.problems("test", limit=limit) for _ in range(repeats)]
    out = model.generate([task.format_prompt(p) for p in problems], model.default_sampler(),
                         seeds=range(1000, 1000 + len(problems)))
    correct = getattr(task, score)
    pass1 = sum(correct(p, t) for p, t in zip(problems, out.texts)) / len(problems)
    return pass1, json.loads((ZOO_DIR / name / "metrics.json").read_text())["accuracy"]["pass@1"]


@pytest.mark.parametrize("name", SEARCH_TASK_MODELS)
def test_search_task_models_keep_an_accuracy_floor(name):
    """Each Countdown CD3 / Sudoku 4x4 model, at its default decoding, solves at least half
    its card's pass@1 on 20 test problems x 2 seeded samples: far below what it measured,
    far above the ~0 of a model whose weights were scrambled or mis-loaded."""
    model = load_model(name)
    assert model.meta["task"]["name"] == ("countdown" if name.startswith("countdown") else "sudoku"), name
    pass1, measured = _sampled_and_carded_pass1(name, model, limit=20, repeats=2)
    assert measured > 0.5 and pass1 >= measured / 2, (name, pass1, measured)


@pytest.mark.parametrize("name", ["wordproblems-teacher", "wordproblems-sdtt-37", "wordproblems-ar"])
def test_word_problem_models_keep_an_accuracy_floor(name):
    """The voting models (no verifier: scored against the reference) solve at least half
    their card's pass@1 on 20 test problems x 2 seeded samples."""
    model = load_model(name, ar_backend="transformers")
    pass1, measured = _sampled_and_carded_pass1(name, model, limit=20, repeats=2, score="is_correct")
    assert 0.3 <= measured and pass1 >= measured / 2, (name, pass1, measured)


def _role(meta: dict) -> str:
    """A planning-task zoo model's role among its twins: the AR twin, an SDTT student or the teacher."""
    return "ar" if meta.get("kind") == "ar" else "student" if meta.get("sdtt") else "teacher"


CD4_MODELS = [n for n in available_models() if n.startswith("countdown-cd4-")]


def test_cd4_is_shipped_as_twins_and_a_student():
    """The planning task's models: a diffusion teacher, an SDTT student and the AR twin of one size."""
    roles = {}
    for name in CD4_MODELS:
        meta = load_model(name, ar_backend="transformers").meta
        assert meta["task"] == {"name": "countdown", "options": {"n": 4}, "gen_length": None,
                                "tokenizer": {"kind": "numbers", "max_number": 999}}, name
        roles[name] = _role(meta)
    assert {"ar", "student", "teacher"} <= set(roles.values()), roles


@pytest.mark.parametrize("name", CD4_MODELS)
def test_cd4_models_keep_an_accuracy_floor(name):
    """Each CD4 model solves at least half its card's pass@1 on 64 test problems x 4 seeded
    samples (cards: the teacher 0.026, about 7 of 256; the student and the twin 0.13-0.16,
    about 35-40; a scrambled or mis-loaded model solves none)."""
    pass1, measured = _sampled_and_carded_pass1(name, load_model(name, ar_backend="transformers"), limit=64, repeats=4)
    assert measured >= 0.02 and pass1 >= measured / 2, (name, pass1, measured)


SUDOKU6_MODELS = [n for n in available_models() if n.startswith("sudoku6-")]


def test_sudoku6_is_shipped_as_twins_and_a_student():
    """The order-matters Sudoku: a diffusion teacher, its SDTT student and the AR twin of one
    size, all on 6x6 puzzles with 14 givens; the diffusion models decode largest margin first."""
    roles = {}
    for name in SUDOKU6_MODELS:
        meta = load_model(name, ar_backend="transformers").meta
        assert meta["task"]["name"] == "sudoku" and meta["task"]["options"] == {"size": 6, "givens": 14}, name
        roles[name] = _role(meta)
        if roles[name] != "ar":
            assert meta["sampler"]["method"] == "confidence" and meta["sampler"]["remasking"] == "margin", name
    assert sorted(roles.values()) == ["ar", "student", "teacher"], roles


@pytest.mark.parametrize("name", SUDOKU6_MODELS)
def test_sudoku6_models_keep_an_accuracy_floor(name):
    """Each 6x6 model solves at least half its card's pass@1 on 20 test puzzles x 4 seeded
    samples (cards: the AR twin 0.29, the student 0.76, the teacher 0.89; a scrambled or
    mis-loaded model solves none)."""
    pass1, measured = _sampled_and_carded_pass1(name, load_model(name, ar_backend="transformers"), limit=20, repeats=4)
    assert measured >= 0.2 and pass1 >= measured / 2, (name, pass1, measured)


def test_the_sudoku_student_solves_puzzles():
    """The embedded default is a real model: most sampled boards are valid solutions."""
    model = load_model(default_model_for("sudoku"))
    task = task_from_config(model.meta["task"])
    problems = task.problems("test", limit=32)
    out = model.generate([task.format_prompt(p) for p in problems], model.default_sampler(), seeds=range(32))
    solved = sum(task.verify(p, t) for p, t in zip(problems, out.texts))
    assert solved >= 26, solved


def _carded_models() -> list[str]:
    return [p.parent.name for p in sorted(ZOO_DIR.glob("*/MODEL.md")) if (p.parent / "metrics.json").is_file()]


def _measured(card: str) -> tuple[re.Match, dict[str, str]]:
    """The ``## Measured`` section of a card as ``distill.ship.card`` writes it: the header
    line (problems, samples, backend, samples/s) and the metric table (name -> printed value)."""
    assert "\n## Measured" in card and "| metric | value |" in card
    section = card.split("\n## Measured", 1)[1]
    header = re.search(r"^(\d+) test problems x (\d+) samples, temperature [\d.]+(, (\w+) backend)? \(([\d.]+) samples/s",
                       section, re.M)
    table = section.split("| metric | value |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 2 and cells[0] not in rows, line
        rows[cells[0]] = cells[1]
    return header, rows


@pytest.mark.parametrize("name", _carded_models())
def test_card_numbers_are_the_metrics_they_come_from(name):
    """Every number of a card's measured table is its metrics.json value at the printed
    precision, and the table lists exactly the metrics ``distill.ship`` reports (k = 1 and
    k = the sample count): a card edited by hand, or copied from another model, fails."""
    card = (ZOO_DIR / name / "MODEL.md").read_text()
    metrics = json.loads((ZOO_DIR / name / "metrics.json").read_text())
    header, rows = _measured(card)
    assert header is not None, f"{name}: no '<problems> test problems x <samples> samples' line"
    problems, samples, backend, per_s = int(header[1]), int(header[2]), header[4], header[5]
    assert (problems, samples) == (metrics["problems"], metrics["samples"]), name
    assert backend == metrics.get("backend"), name
    assert per_s == f"{metrics['throughput']['samples_per_s']:.1f}", name
    acc = metrics["accuracy"]
    assert set(rows) == {k for k in acc if k.split("@")[1] in ("1", str(samples))}, name
    wrong = {k: (v, f"{acc[k]:.3f}") for k, v in rows.items() if v != f"{acc[k]:.3f}"}
    assert not wrong, f"{name}: card value vs metrics.json {wrong}"
    assert f"samples={samples} limit={problems}" in card.split("Reproduce:", 1)[1], name


def test_every_default_model_is_shipped():
    for task_name in DEFAULT_MODELS:
        assert default_model_for(task_name) in available_models()
