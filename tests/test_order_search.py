"""Order search (``Search(strategy="order")``): a beam over which positions a diffusion model
commits next and what; LLaDA's schedule per block; partial checks prune; seeds by problem."""
from __future__ import annotations

import json

import pytest
import torch

from sdtt_search import load_model
from sdtt_search import run as run_module
from sdtt_search.cli import task_from_config
from sdtt_search.sampling_config import SamplerConfig
from sdtt_search.search.engine import Search
from sdtt_search.search.order_search import OrderConfig, expand, schedule
from sdtt_search.tokenizer import Tokenizer
from tasks import load_task
from tasks.partial import CONSISTENT, VIOLATED, PartialVerdict

TOK = Tokenizer.char_level("0123456789")
GEN = 17
SUDOKU = load_task("sudoku", size=4)
PROBLEMS = SUDOKU.problems("test", limit=2)


class NineFirst(type(SUDOKU)):
    def partial_check(self, problem, pieces, ended=False):
        if pieces and pieces[0] == "9":
            return PartialVerdict(VIOLATED, (0,), "a 9")
        return PartialVerdict(CONSISTENT)


def _fixed_logp(seed: int = 0) -> torch.Tensor:
    """[GEN, V] log-probabilities that do not depend on the state: digits only, "9" first at position 0."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.full((GEN, TOK.vocab_size), -1e9, dtype=torch.float64)
    digits = [TOK.encode(str(d))[0] for d in range(10)]
    logits[:, digits] = torch.rand(GEN, 10, generator=gen, dtype=torch.float64) * 3
    logits[0, TOK.encode("9")[0]] = 3.2  # the most likely digit at position 0, not a certain one
    logits[GEN - 1, :] = -1e9
    logits[GEN - 1, TOK.eos_id] = 0.0
    return torch.log_softmax(logits, -1)


class FixedModel:
    """A diffusion model whose ``predict`` gives the same distribution whatever is committed."""

    kind = "diffusion"
    name = "fixed"
    gen_length = GEN
    context_length = None
    tokenizer = TOK
    meta: dict = {}

    def __init__(self):
        self.logp = _fixed_logp()
        self.calls = 0

    def default_sampler(self) -> SamplerConfig:
        return SamplerConfig(method="confidence", steps=4, gen_length=GEN, temperature=1.0)

    def generate(self, prompts, sampler, *, seeds):  # pragma: no cover - order search only predicts
        raise AssertionError

    def infill(self, *args, **kwargs):  # pragma: no cover
        raise AssertionError

    def predict(self, prompts, tokens):
        self.calls += 1
        return self.logp.expand(len(prompts), -1, -1).clone()


def _path_score(logp: torch.Tensor, text: str) -> float:
    ids = TOK.encode(text) + [TOK.eos_id]
    return sum(float(logp[j, t]) for j, t in enumerate(ids))


def test_the_schedule_is_llada_s_per_block():
    assert schedule(17, 4, None) == [(0, 17, 5), (0, 17, 4), (0, 17, 4), (0, 17, 4)]
    assert schedule(12, 12, 1) == [(j, j + 1, 1) for j in range(12)]
    assert schedule(12, 6, 4) == [(0, 4, 2), (0, 4, 2), (4, 8, 2), (4, 8, 2), (8, 12, 2), (8, 12, 2)]
    with pytest.raises(ValueError, match="fewer than the 12 blocks"):
        schedule(12, 4, 1)


def test_a_greedy_child_commits_the_surest_positions_and_a_drawn_one_k_masked_ones():
    logp = torch.log_softmax(torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 1.0], [9.0, 0.0, 0.0], [0.0, 2.0, 0.0]],
                                          dtype=torch.float64), -1)
    tokens = [None, None, None, 1]
    greedy, gain = expand(logp, tokens, 0, 4, 2, 0, 1.0, seed=5)
    assert greedy == [1, None, 0, 1]  # positions 2 (p ~ 1) and 0 (p ~ 0.99) by confidence; 3 was given
    assert gain == pytest.approx(float(logp[2, 0] + logp[0, 1]))
    for seed in range(20):
        drawn, gain = expand(logp, tokens, 0, 4, 2, 1, 1.0, seed=seed)
        assert sum(t is not None for t in drawn) == 3 and drawn[3] == 1
        assert gain == pytest.approx(sum(float(logp[j, t]) for j, t in enumerate(drawn) if j < 3 and t is not None))
        assert expand(logp, tokens, 0, 4, 2, 1, 1.0, seed=seed) == (drawn, gain)  # seeded
    inside = expand(logp, tokens, 1, 2, 2, 1, 1.0, seed=0)[0]
    assert [t is not None for t in inside] == [False, True, False, True]  # only inside [lo, hi), k capped


def test_the_beam_keeps_the_most_likely_paths_and_prunes_violated_ones():
    model = FixedModel()
    plain_task = type(SUDOKU)(size=4)
    results = Search(model, plain_task, strategy="order", order=OrderConfig(branch=3)).generate_problems(PROBLEMS, 4)
    best_text = TOK.decode(model.logp.argmax(-1).tolist())
    for r in results:
        scores = [_path_score(model.logp, c.text) for c in r.candidates]
        assert r.candidates[0].text == best_text  # the greedy path is the most likely one: it leads the beam
        assert scores == sorted(scores, reverse=True) and len({c.text for c in r.candidates}) == 4
    assert model.calls == 1 + 3  # a call a step (batched over problems and states); the first step has one state
    pruned = Search(FixedModel(), NineFirst(size=4), strategy="order", order=OrderConfig(branch=3)).generate_problems(
        PROBLEMS, 4)
    assert best_text.startswith("9") and all(not c.text.startswith("9") for r in pruned for c in r.candidates)


@pytest.mark.parametrize("name", ["countdown-cd3-wide-teacher", "sudoku4-sdtt-4"])
def test_order_search_does_not_depend_on_the_batch(name):
    model = load_model(name)
    task = task_from_config(model.meta["task"])
    problems = task.problems("test", limit=3)
    config = OrderConfig(branch=3)
    together = Search(model, task, strategy="order", order=config, batch_size=512, seed=2).generate_problems(problems, 3)
    alone = [r for p in problems
             for r in Search(model, task, strategy="order", order=config, batch_size=2, seed=2).generate_problems([p], 3)]
    assert [[c.text for c in r.candidates] for r in together] == [[c.text for c in r.candidates] for r in alone]


def test_order_search_lifts_each_candidate_of_the_cd3_teacher():
    model = load_model("countdown-cd3-wide-teacher")
    task = task_from_config(model.meta["task"])
    problems = task.problems("test", limit=24)
    plain = Search(model, task, seed=1).best_of_n(problems, 4).metrics["accuracy"]["pass@1"]
    ordered = Search(model, task, strategy="order", seed=1).best_of_n(problems, 4).metrics["accuracy"]["pass@1"]
    assert ordered > plain + 0.15


def test_order_search_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["task=sudoku", "model=sudoku4-sdtt-2", "samples=2", "limit=2", "strategy=order", "order.branch=2",
            f"output_dir={out}", "plot=false", "progress=false"]
    assert run_module.main(args) == 0
    assert json.loads((out / "run_config.json").read_text())["strategy"] == {"name": "order", "branch": 2}
    assert json.loads((out / "metrics.json").read_text())["order"] == {"branch": 2}
    capsys.readouterr()
    assert run_module.main([*args[:-3], f"output_dir={tmp_path / 'bad'}", "order.branch=0"]) != 0
    assert "order.branch=0 must be a positive integer" in capsys.readouterr().err


def test_a_model_without_predict_or_extend_has_no_order_search():
    class AR:
        kind, name = "ar", "countdown-cd3-ar"

        def generate(self, prompts, sampler, *, seeds):
            raise AssertionError

    with pytest.raises(ValueError, match="countdown-cd3-ar has neither: use strategy=best_of_n"):
        Search(AR(), SUDOKU, SamplerConfig(method="autoregressive"), strategy="order")


class FixedAR:
    """An AR model whose next-token distribution depends on the position only (``extend``)."""

    kind = "ar"
    name = "fixed-ar"
    gen_length = GEN
    context_length = None
    tokenizer = TOK
    meta: dict = {}

    def __init__(self):
        self.logp = _fixed_logp()

    def default_sampler(self) -> SamplerConfig:
        return SamplerConfig(method="autoregressive", steps=GEN, gen_length=GEN, temperature=1.0)

    def generate(self, prompts, sampler, *, seeds):  # pragma: no cover - order search only extends
        raise AssertionError

    def extend(self, prompts, prefixes, sampler, *, seeds, max_tokens):
        from sdtt_search.interface import Completions

        tokens, lps = [], []
        for prefix, seed in zip(prefixes, seeds):
            row = self.logp[len(prefix)]
            if sampler.temperature == 0:
                token = int(row.argmax())
            else:
                token = int(torch.multinomial(row.exp(), 1, generator=torch.Generator().manual_seed(seed)))
            tokens.append([token])
            lps.append([float(row[token])])
        return Completions(texts=[""] * len(prompts), logprobs=lps, nfe=1, positions=1, tokens=tokens,
                           token_logprobs=lps)


def test_an_ar_models_order_search_is_a_beam_over_prefixes():
    model = FixedAR()
    results = Search(model, type(SUDOKU)(size=4), strategy="order", order=OrderConfig(branch=3)).generate_problems(
        PROBLEMS, 4)
    best_text = TOK.decode(model.logp.argmax(-1).tolist())
    for r in results:
        scores = [_path_score(model.logp, c.text) for c in r.candidates]
        assert r.candidates[0].text == best_text and scores == sorted(scores, reverse=True)
        assert len({c.text for c in r.candidates}) == 4
    pruned = Search(FixedAR(), NineFirst(size=4), strategy="order", order=OrderConfig(branch=3)).generate_problems(
        PROBLEMS, 4)
    assert best_text.startswith("9") and all(not c.text.startswith("9") for r in pruned for c in r.candidates)


def test_the_ar_twins_beam_does_not_depend_on_the_batch():
    model = load_model("countdown-cd3-wide-ar", ar_backend="transformers")
    task = task_from_config(model.meta["task"])
    problems = task.problems("test", limit=3)
    together = Search(model, task, strategy="order", order=OrderConfig(branch=2), batch_size=64,
                      seed=2).generate_problems(problems, 2)
    alone = [r for p in problems for r in Search(model, task, strategy="order", order=OrderConfig(branch=2),
                                                 batch_size=3, seed=2).generate_problems([p], 2)]
    assert [[c.text for c in r.candidates] for r in together] == [[c.text for c in r.candidates] for r in alone]


def test_a_noise_conditioned_student_has_no_order_search():
    model = load_model("countdown-cd3-wide-sdtt-4")
    with pytest.raises(ValueError, match="noise-conditioned"):
        Search(model, task_from_config(model.meta["task"]), strategy="order")
