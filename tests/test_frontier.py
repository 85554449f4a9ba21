"""benchmarks/frontier.py: the budget -> samples -> verified@k math, FLOP counts, and a smoke run."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from ar_fixtures import tiny_ar

from sdtt_search.loading import load_model
from tasks import load_task

spec = importlib.util.spec_from_file_location("frontier", Path(__file__).resolve().parents[1] / "benchmarks" / "frontier.py")
frontier = importlib.util.module_from_spec(spec)
spec.loader.exec_module(frontier)


def test_budget_buys_floor_samples_and_exact_verified_at_k():
    # 4 samples; problem A: samples 0 and 1 verified, only 0 correct; problem B: nothing verified.
    problems = [{"verified": [True, True, False, False], "correct": [True, False, False, False]},
                {"verified": [False] * 4, "correct": [False] * 4}]
    assert frontier.accuracy_at_budget(problems, 0.5, 0.4) == (0.0, 0, False)  # cannot afford one sample
    acc, k, capped = frontier.accuracy_at_budget(problems, 0.5, 1.0)  # k = 2
    # A: P(subset of 2 holds a verified sample) = 1 - C(2,2)/C(4,2) = 5/6, then 1/2 of the verified are correct.
    assert (k, capped) == (2, False) and acc == pytest.approx((5 / 6 * 0.5 + 0) / 2)
    acc, k, capped = frontier.accuracy_at_budget(problems, 0.5, 10.0)  # k = 20 > N
    assert (k, capped) == (4, True) and acc == pytest.approx(0.25)


def test_budget_grid_spans_one_fast_sample_to_n_slow_ones():
    runs = {"a": {"seconds_per_sample": 0.01}, "b": {"seconds_per_sample": 0.04}}
    grid = frontier.budget_grid(runs, 8, points=5)
    assert grid[0] == pytest.approx(0.01) and grid[-1] == pytest.approx(0.32)
    assert all(x < y for x, y in zip(grid, grid[1:]))


def test_ar_flops_per_token_are_about_twice_the_matmul_parameters(tmp_path):
    net, _ = tiny_ar(tmp_path / "ar", gen_length=12)
    model = load_model(tmp_path / "ar", ar_backend="transformers")
    task = load_task("countdown", n=3)
    flops = frontier.flops_per_token(model, task, task.problems("test", limit=4), 4)
    matmul_params = sum(p.numel() for n, p in net.named_parameters() if n.endswith("proj.weight") or n == "lm_head.weight")
    # 2 FLOPs per weight per token, plus attention and the prompt's prefill spread over the tokens.
    assert 2 * matmul_params <= flops <= 6 * 2 * matmul_params


def test_diffusion_flops_per_token_grow_with_steps():
    model = load_model("sudoku4-teacher")
    task = load_task("sudoku", size=4)
    problems = task.problems("test", limit=4)
    counts = {}
    for steps in (2, 8):
        model.meta["sampling_steps"] = steps
        counts[steps] = frontier.flops_per_token(model, task, problems, 4)
    assert counts[8] > 2.5 * counts[2]


def test_forward_timer_counts_calls_and_restores_forward():
    layer = torch.nn.Linear(3, 3)
    with frontier.forward_timer(layer) as box:
        layer(torch.ones(1, 3))
        layer(torch.ones(1, 3))
    assert box["calls"] == 2 and box["seconds"] > 0
    assert "forward" not in layer.__dict__


def test_frontier_smoke_run_writes_json_png_and_checks_targets(tmp_path):
    tiny_ar(tmp_path / "ar", task={"name": "sudoku", "options": {"size": 4}}, gen_length=17)
    out = tmp_path / "out"
    args = frontier.parse(["--task", "sudoku", "--models", "sudoku4-teacher", "sudoku4-sdtt-2", str(tmp_path / "ar"),
                           "--problems", "3", "--samples", "4", "--batches", "1", "2", "--repeats", "1",
                           "--share-batch", "2", "--flops-batch", "2", "--ar-backend", "transformers", "--out", str(out)])
    report = frontier.run(args)
    saved = json.loads((out / "frontier.json").read_text())
    assert (out / "frontier.png").stat().st_size > 0
    assert set(saved["models"]) == {"sudoku4-teacher", "sudoku4-sdtt-2", str(tmp_path / "ar")}
    assert [m["role"] for m in saved["models"].values()] == ["teacher", "student", "ar"]
    assert any("sudoku4-sdtt-2 vs sudoku4-teacher" in line for line in report["targets"])
    assert any("equal wall-clock budget" in line for line in report["targets"])
    for point in saved["frontier"]:
        for name, k in point["k"].items():
            affordable = int(point["budget_s"] / saved["models"][name]["search"]["seconds_per_sample"] + 1e-9)
            assert k == min(affordable, 4) and point["capped"][name] == (affordable > 4)


def test_gpu_bench_quick_mode_runs_on_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_bench.py")
    gpu_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_bench)
    report = gpu_bench.main(["--device", "cpu", "--quick", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "gpu.json").read_text())["device_name"] == "cpu"
    rows = report["crossover"]["results"]
    assert [r["batch"] for r in rows["ar"]] == [1, 4] and all(r["tokens_per_s"] > 0 for r in rows["student"])
    assert "AR overtakes the student" in (tmp_path / "gpu.md").read_text()


def test_model_spec_overrides_the_default_sampler():
    model = frontier.load_spec("sudoku4-teacher:method=confidence,steps=5,temperature=0.5", "cpu", "auto")
    sampler = model.default_sampler()
    assert (sampler.method, sampler.steps, sampler.temperature) == ("confidence", 5, 0.5)
    assert frontier.load_spec("sudoku4-teacher", "cpu", "auto").default_sampler().method == "ancestral"
    assert frontier.load_spec("sudoku4-ar:ar_backend=transformers", "cpu", "vllm").backend_name == "transformers"
