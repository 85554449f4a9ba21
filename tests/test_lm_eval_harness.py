"""The ``sdtt-search`` model type of lm-evaluation-harness, offline."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from lm_eval import simple_evaluate
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager

import lm_eval
from sdtt_search.lm_eval_harness import SDTTSearchLM
from test_tasks_gsm8k import gsm8k_data_dir


def local_gsm8k_task(tmp_path: Path) -> Path:
    """lm-eval's own gsm8k task file, pointed at the local GSM8K jsonl files."""
    config = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml").read_text())
    data = gsm8k_data_dir()
    data = data / "gsm8k" if (data / "gsm8k" / "test.jsonl").is_file() else data
    config.update(task="gsm8k_local", dataset_path="json", dataset_name=None,
                  dataset_kwargs={"data_files": {"train": str(data / "train.jsonl"), "test": str(data / "test.jsonl")}})
    config.pop("tag", None)
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "gsm8k_local.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_a_zoo_model_runs_gsm8k_through_lm_eval_offline(tmp_path):
    lm = SDTTSearchLM(pretrained="gsm8k-sdtt", steps=4, seed=1)
    results = simple_evaluate(model=lm, tasks=["gsm8k_local"], num_fewshot=0, limit=3,
                              task_manager=TaskManager(include_path=str(local_gsm8k_task(tmp_path))),
                              log_samples=True, bootstrap_iters=0)
    scores = results["results"]["gsm8k_local"]
    assert {"exact_match,strict-match", "exact_match,flexible-extract"} <= set(scores)
    samples = [s for s in results["samples"]["gsm8k_local"] if s["filter"] == "strict-match"]  # one per filter
    assert len(samples) == 3 and all(isinstance(s["resps"][0][0], str) for s in samples)
    # the same seed gives the same generations
    again = SDTTSearchLM(pretrained="gsm8k-sdtt", steps=4, seed=1)
    requests = [Instance(request_type="generate_until", doc={}, arguments=(s["arguments"][0][0], s["arguments"][0][1]),
                         idx=0) for s in samples]
    assert again.generate_until(requests) == [s["resps"][0][0] for s in samples]


def test_elbo_of_one_token_is_its_exact_log_probability_on_average():
    """With a one-token continuation the NELBO is exact: E_t[(1/t) 1{masked} (-log p)] =
    -log p(token | context, MASK). The Monte Carlo estimate must match the direct
    forward within its noise (a wrong 1/t weight or mask rate fails)."""
    lm = SDTTSearchLM(pretrained="sudoku4-sdtt-4", mc_samples=4000)
    tokenizer, network = lm.model.tokenizer, lm.model.model
    context, token = "3102200002100320", "3"
    ids = tokenizer.encode(context) + [tokenizer.mask_id]
    with torch.no_grad():
        logits = network(torch.tensor([ids]), attention_mask=None, sigma=None)[0, -1].float()
    logits[tokenizer.mask_id] = float("-inf")
    exact = float(torch.log_softmax(logits, -1)[tokenizer.encode(token)[0]])
    estimate = lm.elbo(context, token, seed=0)
    # per sample the term is (1/t) 1{masked} (-log p): relative variance (1-t)/t, about ln(1/eps) = 6.9
    # over K stratified t, so 4 standard errors are 4 sqrt(6.9 / K) of |log p| (a missing 1/t halves it)
    tolerance = 4 * (6.9 / lm.mc_samples) ** 0.5 * abs(exact) + 0.01
    assert estimate == pytest.approx(exact, abs=tolerance)
    (ll, greedy), = lm.loglikelihood([Instance(request_type="loglikelihood", doc={}, arguments=(context, token),
                                               idx=0)])
    assert ll == pytest.approx(exact, abs=tolerance) and greedy is False
    # a longer continuation: the ELBO bounds the log-likelihood from below and ranks the right grid first
    right, wrong = "3142243142131324", "3142243142131342"
    lm.mc_samples = 256
    assert lm.elbo(context, right, seed=1) > lm.elbo(context, wrong, seed=1)


def test_bad_model_args_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown option.*nope"):
        SDTTSearchLM(pretrained="sudoku4-sdtt-4", nope=1)
    with pytest.raises(ValueError, match="mc_samples"):
        SDTTSearchLM(pretrained="sudoku4-sdtt-4", mc_samples=0)
    ar = SDTTSearchLM(pretrained="sudoku4-ar")
    with pytest.raises(ValueError, match="needs a masked diffusion model"):
        ar.loglikelihood([Instance(request_type="loglikelihood", doc={}, arguments=("1", "2"), idx=0)])
    assert json.dumps(ar.generate_until([Instance(request_type="generate_until", doc={},
                                                  arguments=("3102200002100320", {"until": []}), idx=0)]))
