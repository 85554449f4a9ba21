"""The shipped models load, carry a card, sample, and are the run defaults."""
from __future__ import annotations

import json
import os

import pytest

from sdtt_search.cli import task_from_config
from sdtt_search.loading import load_model
from sdtt_search.zoo import DEFAULT_MODELS, ZOO_DIR, available_models, default_model_for

GSM8K_DIR = os.environ.get("SDTT_DATA_DIR") or str(ZOO_DIR.parents[2] / "shared" / "data" / "gsm8k")


def test_zoo_is_small_and_complete():
    names = available_models()
    assert {"sudoku4-sdtt-4", "countdown-cd3-num-sdtt-4", "gsm8k-sdtt"} <= set(names)
    total = sum(f.stat().st_size for f in ZOO_DIR.rglob("*") if f.is_file())
    assert total < 60 * 2**20
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


def test_the_sudoku_student_solves_puzzles():
    """The embedded default is a real model: most sampled boards are valid solutions."""
    model = load_model(default_model_for("sudoku"))
    task = task_from_config(model.meta["task"])
    problems = task.problems("test", limit=32)
    out = model.generate([task.format_prompt(p) for p in problems], model.default_sampler(), seeds=range(32))
    solved = sum(task.verify(p, t) for p, t in zip(problems, out.texts))
    assert solved >= 26, solved


def test_every_default_model_is_shipped():
    for task_name in DEFAULT_MODELS:
        assert default_model_for(task_name) in available_models()
