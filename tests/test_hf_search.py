"""Hugging Face models in the search pipeline: ``Search.best_of_n`` on GSM8K, the run CLI with
``model=hf:... trust_remote_code=true``, a Ray worker's load, and one replica per GPU."""
from __future__ import annotations

import json

import pytest
from test_hf_fixtures import dream_dir, gsm8k_file, llada_dir, single_thread  # noqa: F401 - pytest fixtures

from sdtt_search import SamplerConfig, Search, load_model
from sdtt_search import run as run_module
from sdtt_search.search import ray_executor
from tasks import load_task

SAMPLER = SamplerConfig(method="confidence", steps=4, gen_length=4, block_length=2, temperature=1.0)


def _texts(result):
    return [[c.text for c in p.candidates] for p in result.problems]


@pytest.mark.parametrize("fixture", ["llada_dir", "dream_dir"])
def test_best_of_n_on_gsm8k_with_an_instruct_model(fixture, request, gsm8k_file):  # noqa: F811
    model = load_model(f"hf:{request.getfixturevalue(fixture)}", trust_remote_code=True,
                       hf_options={"answer_format": "hash"})
    task = load_task("gsm8k", path=str(gsm8k_file))
    problems = task.problems("test")
    result = Search(model, task, SAMPLER, batch_size=16, seed=3).best_of_n(problems, n=2)
    assert [p.id for p in result.problems] == [p.id for p in problems]
    assert all(len(p.candidates) == 2 for p in result.problems)
    assert result.problems[0].prompt == task.format_prompt(problems[0])  # the task prompt; the chat form is the model's
    assert {"pass@1", "maj@2"} <= set(result.metrics["accuracy"])
    # rows packed 6 to a batch give the candidates they get 3 to a batch
    small = Search(model, task, SAMPLER, batch_size=3, seed=3).best_of_n(problems, n=2)
    assert _texts(small) == _texts(result)


def _run_args(model_dir, data, out, *extra):
    return ["task=gsm8k", f"task.path={data}", f"model=hf:{model_dir}", "samples=2", "limit=2", "sampler.steps=4",
            "sampler.gen_length=8", "sampler.block_length=4", "device=cpu", "batch_size=4", f"output_dir={out}",
            "plot=false", "progress=false", *extra]


def test_run_cli_reaches_load_model_with_the_hf_options(llada_dir, gsm8k_file, tmp_path, capsys):  # noqa: F811
    assert run_module.main(_run_args(llada_dir, gsm8k_file, tmp_path / "no-trust")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "trust_remote_code=true" in err

    out = tmp_path / "run"
    assert run_module.main(_run_args(llada_dir, gsm8k_file, out, "trust_remote_code=true", "family=llada",
                                     "dtype=float32", "hf.answer_format=boxed")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == f"hf:{llada_dir}" and metrics["problems"] == 2
    # the model's defaults (confidence decoding) under the command line's overrides
    assert (metrics["sampler"]["method"], metrics["sampler"]["block_length"], metrics["steps"]) == ("confidence", 4, 4)


def test_options_reach_load_model(monkeypatch, llada_dir, gsm8k_file, tmp_path):  # noqa: F811
    seen = {}
    real = run_module.load_model

    def spy(name, **kwargs):
        seen.update(kwargs)
        return real(name, **kwargs)

    monkeypatch.setattr(run_module, "load_model", spy)
    assert run_module.main(_run_args(llada_dir, gsm8k_file, tmp_path / "spy", "trust_remote_code=true",
                                     "hf.chat=false", "hf.system_prompt=Be brief.")) == 0
    assert seen["trust_remote_code"] is True and seen["family"] is None and seen["dtype"] is None
    assert seen["hf_options"] == {"chat": False, "answer_format": "hash", "system_prompt": "Be brief.", "native": None}


def test_ray_worker_loads_its_replica_with_the_load_options(llada_dir, gsm8k_file):  # noqa: F811
    task_cfg = {"name": "gsm8k", "path": str(gsm8k_file), "options": {}}
    args = {"model": f"hf:{llada_dir}", "task": task_cfg, "sampler": SAMPLER.to_dict(), "batch_size": 8, "seed": 0,
            "device": "cpu", "load_options": {"trust_remote_code": True, "hf_options": {"answer_format": "hash"}}}
    worker = ray_executor.SearchWorker(args, threads=None)  # the actor class itself, without a cluster
    assert worker.search.model.family == "llada" and worker.search.model.prompt_format.answer_format == "hash"
    problems = load_task("gsm8k", path=str(gsm8k_file)).problems("test", limit=2)
    results = worker.generate(problems, 2)
    assert [len(r.candidates) for r in results] == [2, 2]


def test_one_replica_per_gpu(monkeypatch):
    monkeypatch.setattr(ray_executor.ray, "cluster_resources", lambda: {"CPU": 32.0, "GPU": 4.0})
    # the cluster's GPUs count even when the driver has none (a CPU head node)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert ray_executor._placement({"device": "cuda"}, 8) == ({"num_gpus": 1, "num_cpus": 1}, "cuda", 4)
    assert ray_executor._placement({"device": "cpu"}, 8) == ({"num_cpus": 1}, "cpu", 32)
    monkeypatch.setattr(ray_executor.ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert ray_executor._placement({"device": "cuda"}, 2)[1] == "cpu"
