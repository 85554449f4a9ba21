"""Stratified first tokens (``SamplerConfig.stratify``): a problem's candidates draw
their first tokens at the points of one randomised Halton sequence. Each candidate
alone keeps the model's distribution; k = 2^m candidates of one problem split the
first token's probability mass evenly (a token of probability p is drawn
floor(k p) or ceil(k p) times), which independent draws do not."""
from __future__ import annotations

import math

import pytest
import torch
from ar_fixtures import tiny_ar
from fakes import FixedModel
from llama_fixtures import MASK as LMASK
from llama_fixtures import three_prompt_batch, tiny_llama_denoiser

from sdtt_search import Search, load_model
from sdtt_search.ar.backends import SeededTokenPicker
from sdtt_search.diffusion import SamplerConfig, build_batch, sample
from sdtt_search.diffusion import logits_sources
from sdtt_search.diffusion.rng import radical_inverse, stratified_uniforms
from sdtt_search.interface import Completions
from sdtt_search.search.engine import candidate_seed, problem_seed

V, MASK, PAD = 12, 11, 0
LOGITS = torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5, -30.0, -30.0, -30.0, -30.0, -30.0, -30.0, 5.0])
PROBS = torch.softmax(torch.cat([LOGITS[:MASK], LOGITS[MASK + 1:]]).double(), -1)  # MASK never drawn (it is last)


def _evenly_split(tokens: torch.Tensor, probs: torch.Tensor) -> bool:
    """Whether each token's count among ``tokens`` [k] is within 1 of k * its probability."""
    counts = torch.bincount(tokens, minlength=probs.numel())[: probs.numel()].double()
    return bool(((counts - tokens.numel() * probs).abs() < 1).all())


def test_radical_inverse_mirrors_the_digits():
    assert radical_inverse(torch.arange(8), 2).tolist() == [0, .5, .25, .75, .125, .625, .375, .875]
    assert radical_inverse(torch.tensor([5]), 3).item() == pytest.approx(2 / 3 + 1 / 9)  # 5 = 12 in base 3


@pytest.mark.parametrize("m", [1, 3, 5])
def test_the_first_points_of_a_group_fall_one_per_cell(m):
    for group in range(5):
        u = stratified_uniforms([group] * 2 ** m, range(2 ** m), 2)
        assert sorted((u[:, 0] * 2 ** m).floor().long().tolist()) == list(range(2 ** m))
        v = stratified_uniforms([group] * 3 ** 2, range(3 ** 2), 2)[:, 1]
        assert sorted((v * 9).floor().long().tolist()) == list(range(9))
    # a later run of 2^m indices starting at a multiple of 2^m covers the cells too
    u = stratified_uniforms([7] * 2 ** m, range(2 ** m, 2 ** (m + 1)), 1)
    assert sorted((u[:, 0] * 2 ** m).floor().long().tolist()) == list(range(2 ** m))


def test_each_point_alone_is_uniform_and_groups_differ():
    groups = 8000
    u = stratified_uniforms(range(groups), [5] * groups, 3)
    assert ((u >= 0) & (u < 1)).all()
    for d in range(3):
        counts = torch.bincount((u[:, d] * 10).floor().long(), minlength=10).double()
        assert (counts - groups / 10).abs().max() < 4 * math.sqrt(groups * 0.09), (d, counts)
    assert abs(torch.corrcoef(u.T)[0, 1]) < 0.05
    with pytest.raises(ValueError, match="dimensions"):
        stratified_uniforms([1], [0], 13)


@pytest.mark.parametrize("k", [8, 16, 32])
@pytest.mark.parametrize("method", ["confidence", "ancestral"])
def test_a_problems_candidates_split_the_first_tokens_mass_evenly(k, method):
    # FixedModel: every column's distribution is the same whatever the others hold
    config = SamplerConfig(method=method, steps=4, temperature=1.0, remasking="left_to_right", stratify=1)
    batch = build_batch([[1, 2]] * k, 4, pad_id=PAD, mask_id=MASK)
    plain_misses = 0
    for group in range(12):
        seeds = [candidate_seed(0, f"p{group}", i) for i in range(k)]
        heads = stratified_uniforms([group] * k, range(k), 1)
        out = sample(FixedModel(LOGITS), batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=MASK,
                     seeds=seeds, heads=heads)
        assert _evenly_split(out.tokens[:, -4], PROBS)
        plain = sample(FixedModel(LOGITS), batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=MASK,
                       seeds=seeds)
        plain_misses += not _evenly_split(plain.tokens[:, -4], PROBS)
        # the columns past the stratified one are the rows' own draws
        assert torch.equal(out.tokens[:, -3:], plain.tokens[:, -3:])
    assert plain_misses >= 6  # independent draws do not split the mass evenly


@pytest.mark.parametrize("method", ["confidence", "ancestral"])
def test_a_stratified_candidate_keeps_the_models_distribution(method):
    rows = 6000
    config = SamplerConfig(method=method, steps=4, temperature=1.0, remasking="left_to_right", stratify=2)
    batch = build_batch([[1, 2]] * rows, 4, pad_id=PAD, mask_id=MASK)
    heads = stratified_uniforms(range(rows), [3] * rows, 2)  # candidate 3 of 6000 problems
    out = sample(FixedModel(LOGITS), batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=MASK,
                 seeds=range(rows), heads=heads)
    for column in (-4, -3):
        freq = torch.bincount(out.tokens[:, column], minlength=V)[: PROBS.numel()].double() / rows
        assert torch.allclose(freq, PROBS, atol=4 * math.sqrt(0.25 / rows)), (column, freq)


def test_a_noise_student_is_shown_the_stratified_uniforms(monkeypatch):
    model = tiny_llama_denoiser(True).enable_noise_input().eval()
    batch = three_prompt_batch(gen_length=6, samples=2)
    seen = []
    denoise = logits_sources.denoise_distinct  # the full forward's call of the network

    def spy(*args, noise=None, **kwargs):
        seen.append(noise.clone())
        return denoise(*args, noise=noise, **kwargs)

    monkeypatch.setattr(logits_sources, "denoise_distinct", spy)
    heads = stratified_uniforms([1, 1, 2, 2, 3, 3], [0, 1] * 3, 2)
    config = SamplerConfig(method="confidence", steps=6, temperature=1.0, remasking="prefix", threshold=0.9,
                           cache=False, stratify=2)
    sample(model, batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=LMASK, seeds=range(6), heads=heads)
    sample(model, batch.x, batch.gen_mask, batch.attention_mask, config, mask_id=LMASK, seeds=range(6))
    cols = batch.gen_mask.any(0).nonzero().squeeze(-1)
    with_heads, without = seen[0], seen[-1]
    assert torch.equal(with_heads[:, cols[:2]], heads)
    assert torch.equal(with_heads[:, cols[2:]], without[:, cols[2:]])


def test_the_token_picker_draws_its_first_steps_at_the_heads():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    k = 16
    scores = probs.float().log().expand(k, 4).clone()
    heads = stratified_uniforms([5] * k, range(k), 1)
    picker = SeededTokenPicker(range(k), prompt_width=3, temperature=1.0, top_p=1.0, device="cpu", heads=heads)
    plain = SeededTokenPicker(range(k), prompt_width=3, temperature=1.0, top_p=1.0, device="cpu")
    first = picker(torch.zeros(k, 3, dtype=torch.long), scores).argmax(-1)
    assert _evenly_split(first, probs)
    assert not _evenly_split(plain(torch.zeros(k, 3, dtype=torch.long), scores).argmax(-1), probs)
    # step 1 is past the stratified head: the rows' own draws
    assert torch.equal(picker(torch.zeros(k, 4, dtype=torch.long), scores),
                       plain(torch.zeros(k, 4, dtype=torch.long), scores))
    with pytest.raises(ValueError, match="stratified uniforms for 15 rows"):
        SeededTokenPicker(range(16), prompt_width=3, temperature=1.0, top_p=1.0, device="cpu", heads=heads[:15])


class _HeadsModel:
    """Writes each row's heads into its text, so a candidate shows the points it drew at."""

    def __init__(self):
        self.calls = []

    def default_sampler(self):
        return SamplerConfig(method="confidence", steps=2, stratify=2)

    def generate(self, prompts, sampler, *, seeds, heads=None):
        self.calls.append(len(prompts))
        texts = [f"{a:.12f},{b:.12f}" for a, b in heads.tolist()]
        return Completions(texts=texts, logprobs=[[0.0]] * len(prompts), nfe=1, positions=1)


class _Problem:
    def __init__(self, pid):
        self.id, self.prompt, self.reference = pid, f"prompt {pid}", "0"


class _Task:
    has_verifier = True

    def format_prompt(self, problem):
        return problem.prompt

    def verify(self, problem, text):
        return text.startswith("0.0") or text.startswith("0.1")  # first point below 0.2

    def extract_answer(self, text):
        return text

    def is_correct(self, problem, text):
        return self.verify(problem, text)


def test_search_gives_candidate_i_point_i_of_its_problems_sequence_whatever_the_batches():
    problems = [_Problem(p) for p in "abc"]
    full = Search(_HeadsModel(), _Task(), batch_size=64, seed=3).generate_problems(problems, 8)
    small = Search(_HeadsModel(), _Task(), batch_size=3, seed=3).generate_problems(problems, 8)
    stopped = Search(_HeadsModel(), _Task(), batch_size=5, seed=3).until_verified(problems, 8, 2)
    for f, s, st in zip(full, small, stopped):
        texts = [c.text for c in f.candidates]
        assert texts == [c.text for c in s.candidates]
        assert texts[: len(st.candidates)] == [c.text for c in st.candidates]
        expected = stratified_uniforms([problem_seed(3, f.id)] * 8, range(8), 2)
        assert texts == [f"{a:.12f},{b:.12f}" for a, b in expected.tolist()]
        firsts = sorted(float(t.split(",")[0]) for t in texts)
        assert sorted(int(u * 8) for u in firsts) == list(range(8))  # one per eighth


def test_a_model_without_heads_is_refused_when_asked_to_stratify():
    class Plain:
        def generate(self, prompts, sampler, *, seeds):
            raise AssertionError("not reached")

    with pytest.raises(ValueError, match="sampler.stratify=0"):
        Search(Plain(), _Task(), SamplerConfig(method="confidence", stratify=1))
    Search(Plain(), _Task(), SamplerConfig(method="confidence"))  # without it nothing is asked of the model


def test_stratify_options_are_checked_with_one_line_errors():
    for bad, needle in [(dict(stratify=-1), "sampler.stratify"), (dict(stratify=13), "sampler.stratify"),
                        (dict(stratify=True), "sampler.stratify")]:
        with pytest.raises(ValueError) as err:
            SamplerConfig(**bad)
        assert "\n" not in str(err.value) and needle in str(err.value)
    on = SamplerConfig(method="confidence", stratify=3)
    assert SamplerConfig.from_dict(on.to_dict()) == on
    assert "stratify" not in SamplerConfig().to_dict()  # saved runs from before it still match


def test_the_transformers_backend_stratifies_a_problems_first_tokens(tmp_path):
    tiny_ar(tmp_path / "ar")
    model = load_model(tmp_path / "ar", ar_backend="transformers")
    config = SamplerConfig(method="autoregressive", temperature=1.0, gen_length=6, stratify=1)
    k = 32
    heads = stratified_uniforms([9] * k, range(k), 1)
    out = model.generate(["12+3="] * k, config, seeds=range(k), heads=heads)
    plain = model.generate(["12+3="] * k, config, seeds=range(k))
    firsts = [t[:1] for t in out.texts]
    # the model's first-token distribution, from its own draws over many seeds
    many = model.generate(["12+3="] * 2000, config, seeds=range(2000))
    alphabet = sorted({t[:1] for t in many.texts + out.texts})
    p = torch.tensor([sum(t[:1] == a for t in many.texts) / 2000 for a in alphabet], dtype=torch.float64)
    counts = torch.tensor([firsts.count(a) for a in alphabet], dtype=torch.float64)
    assert ((counts - k * p).abs() < 1 + 4 * k * math.sqrt(0.25 / 2000)).all(), (counts, k * p)
    assert len(set(firsts)) >= len(set(t[:1] for t in plain.texts))


def test_stratified_runs_report_each_problems_first_k_candidates():
    from sdtt_search.search.report import accuracy_curves
    from sdtt_search.search.results import Candidate, ProblemResult

    def cand(ok, score, answer):
        return Candidate(text=answer, answer=answer, correct=ok, verified=ok, score=score)

    # correct only at indices 2 and 3: a first-k search finds it from k = 4, a random pair in 5 of 6
    r = ProblemResult(id="a", prompt="p", reference="7",
                      candidates=[cand(False, -0.1, "3"), cand(False, -0.2, "3"), cand(True, -0.5, "7"),
                                  cand(True, -0.3, "7")])
    subsets = accuracy_curves([r], 4, has_verifier=True)
    first = accuracy_curves([r], 4, has_verifier=True, first_k=True)
    assert subsets["verified@2"] == pytest.approx(5 / 6) and subsets["pass@1"] == pytest.approx(0.5)
    assert (first["pass@1"], first["pass@2"], first["pass@4"]) == (0.0, 0.0, 1.0)
    assert (first["verified@2"], first["maj@2"], first["verified@4"]) == (0.0, 0.0, 1.0)
    assert first["maj@4"] == subsets["maj@4"] == 0.5  # k = n: the same candidates
    assert list(first) == list(subsets)  # same keys, same order
    problems = [_Problem(p) for p in "ab"]
    metrics = Search(_HeadsModel(), _Task(), batch_size=8).best_of_n(problems, 4).metrics
    assert metrics["accuracy_over"] == "first k candidates"
