"""Identical rows of a network call run once (``diffusion.blocks.denoise_distinct``).

A problem's candidates all start from the same prompt and a fully masked completion, so
the first call of best-of-N, and of a problem's particles, is the same network input for
every candidate; a resampled particle's next call is its parent's. Running those once must
change nothing but the compute: the same candidates bit for bit, fewer rows run.
"""
from __future__ import annotations

import functools

import pytest
import torch

import sdtt_search.diffusion.blocks as blocks
from sdtt_search import load_model
from sdtt_search.diffusion.blocks import distinct_rows
from sdtt_search.search.engine import Search
from sdtt_search.search.particles import ParticleConfig
from tasks import load_task


def test_distinct_rows_numbers_rows_by_first_occurrence():
    x = torch.tensor([[5, 1], [3, 1], [5, 1], [3, 1], [7, 7]])
    first, inverse = distinct_rows(x, None)
    assert first.tolist() == [0, 1, 4]
    assert inverse.tolist() == [0, 1, 0, 1, 2]
    assert torch.equal(x[first][inverse], x)


def test_rows_that_differ_only_in_their_attention_mask_are_not_merged():
    x = torch.tensor([[0, 4, 1], [0, 4, 1]])
    mask = torch.tensor([[False, True, True], [True, True, True]])
    assert distinct_rows(x, mask) is None
    assert distinct_rows(x, torch.ones_like(mask)) is not None
    assert distinct_rows(torch.tensor([[1, 2], [2, 1]]), None) is None
    assert distinct_rows(torch.tensor([[1, 2]]), None) is None


@functools.lru_cache(maxsize=None)
def _sudoku():
    return load_model("sudoku4-sdtt-2", device="cpu"), load_task("sudoku", size=4)


class _RowCounter:
    """Wraps a denoiser's forward, recording the rows of each call."""

    def __init__(self, model):
        self.model, self.rows = model, []
        self.forward = model.forward

    def __enter__(self):
        def counted(*args, **kwargs):
            x = args[0] if args else kwargs["input_ids"]
            self.rows.append(x.shape[0])
            return self.forward(*args, **kwargs)
        self.model.forward = counted
        return self

    def __exit__(self, *exc):
        del self.model.forward


def _texts(results) -> list[tuple[str, float]]:
    return [(c.text, c.score) for r in results for c in r.candidates]


@pytest.mark.parametrize("strategy", ["best_of_n", "smc"])
def test_shared_calls_give_the_same_candidates_from_fewer_rows(strategy, monkeypatch):
    model, task = _sudoku()
    problems = task.problems("test", limit=3)
    kwargs = {"strategy": "smc", "smc": ParticleConfig(every=1)} if strategy == "smc" else {}
    n = 8

    def run():
        search = Search(model, task, model.default_sampler(), batch_size=64, seed=3, **kwargs)
        with _RowCounter(model.model) as counter:
            results = search.generate_problems(problems, n)
        return _texts(results), counter.rows

    shared, shared_rows = run()
    monkeypatch.setattr(blocks, "distinct_rows", lambda x, mask: None)
    alone, alone_rows = run()
    assert shared == alone
    assert alone_rows[0] == len(problems) * n
    assert shared_rows[0] == len(problems)  # the first call: each problem's prompt and masks once
    assert sum(shared_rows) < sum(alone_rows)


def test_order_search_predict_runs_identical_states_once():
    model, task = _sudoku()
    prompts = [task.format_prompt(p) for p in task.problems("test", limit=2)]
    states = [[None] * model.gen_length] * 2
    with _RowCounter(model.model) as counter:
        out = model.predict([prompts[0], prompts[0], prompts[1]], [states[0], states[0], states[1]])
    assert counter.rows == [2]
    assert torch.equal(out[0], out[1])
    assert torch.equal(out[0], model.predict([prompts[0]], [states[0]])[0])


def test_an_ar_models_candidates_share_their_prompts_prefill():
    task = load_task("sudoku", size=4)
    model = load_model("sudoku4-ar", device="cpu", ar_backend="transformers")
    problems = task.problems("test", limit=2)
    inner = model.backend.model.model
    with _RowCounter(inner) as counter:
        packed = Search(model, task, model.default_sampler(), batch_size=64, seed=1).generate_problems(problems, 4)
    assert counter.rows[0] == 2 and counter.rows[1] == 8  # the prompts once, then every candidate
    alone = Search(model, task, model.default_sampler(), batch_size=1, seed=1).generate_problems(problems, 4)
    assert _texts(packed) == _texts(alone)
