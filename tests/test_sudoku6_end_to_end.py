"""Sudoku 6x6 end to end: tiny twins (diffusion and AR) train on the generated stream, export,
load, and search a few puzzles with the gold-free verifier; every candidate is scored as a
36-cell grid of the puzzle it answers."""
from __future__ import annotations

from distill_fixtures import pretrain_config

from distill import pretrain
from sdtt_search import Search
from sdtt_search.loading import load_model
from tasks import load_task

SUDOKU6 = ["task=sudoku", "task.options.size=6", "+task.options.givens=14", "model.max_length=96"]


def test_tiny_6x6_twins_train_and_search_with_the_verifier(tmp_path):
    task = load_task("sudoku", size=6, givens=14, test_size=3)
    problems = task.problems("test")
    for objective in ("mdlm", "ar"):
        export = pretrain.run(pretrain_config(tmp_path / objective, f"objective={objective}", *SUDOKU6))
        model = load_model(str(export), device="cpu", ar_backend="transformers")
        assert model.meta["task"]["options"] == {"size": 6, "givens": 14}
        assert model.gen_length >= 37  # 36 cells and the end token
        sampler = model.default_sampler().replace(temperature=1.0)
        if model.kind == "diffusion":  # the any-order decoding: one cell a step, largest margin first
            sampler = sampler.replace(method="confidence", remasking="margin", steps=model.gen_length,
                                      block_length=None, threshold=None)
        result = Search(model, task, sampler, batch_size=8, seed=0).best_of_n(problems, 2)
        assert [r.id for r in result.problems] == [p.id for p in problems]
        acc = result.metrics["accuracy"]
        assert 0.0 <= acc["pass@1"] <= acc["verified@2"] <= 1.0
        for problem, found in zip(problems, result.problems):
            assert len(found.candidates) == 2
            for cand in found.candidates:
                scores = task.score(problem, cand.text)
                assert 0.0 <= scores["cell_accuracy"] <= 1.0
                assert scores["correct"] == float(task.verify(problem, cand.text))
