"""``python -m benchmarks.hub_gsm8k``: the GPU recipe's dry run offline, and a real run on tiny local checkpoints."""
from __future__ import annotations

import json

from test_hf_causal import _write_causal_lm
from test_hf_fixtures import gsm8k_file, single_thread  # noqa: F401 - pytest fixtures
from test_hf_native import llada_checkpoint  # noqa: F401 - pytest fixture

from benchmarks import hub_gsm8k


def test_the_dry_run_prints_plan_commands_and_memory_and_loads_nothing(capsys, tmp_path):
    runs = hub_gsm8k.main(["--dry-run", "--out", str(tmp_path), "--student", "runs/llada-sdtt/round-3-steps-32"])
    out = capsys.readouterr().out
    assert [r["label"] for r in runs] == ["diffusion", "diffusion-fast-dllm", "student", "ar"]
    assert "model=hf:GSAI-ML/LLaDA-8B-Instruct" in out and "model=hf:Qwen/Qwen2.5-7B-Instruct" in out
    assert "sampler.kv_cache=dual" in out and "ar_backend=vllm" in out and "samples=16" in out
    # 8.02B parameters in bf16; logits of 32 x 506 tokens x 126,464 x 4 bytes
    assert "diffusion: weights 16.0 GB in bf16, logits of one call 8.2 GB" in out
    assert "ar: weights 15.2 GB in bf16" in out
    assert not any((tmp_path / r["label"]).exists() for r in runs)


def test_a_real_run_on_tiny_checkpoints_reports_accuracy_against_seconds(tmp_path, gsm8k_file, llada_checkpoint, capsys):  # noqa: F811
    causal = _write_causal_lm(tmp_path / "tiny-qwen2", "qwen2")
    runs = hub_gsm8k.main(["--diffusion", f"hf:{llada_checkpoint}", "--ar", f"hf:{causal}", "--ar-backend",
                           "transformers", "--samples", "2", "--limit", "2", "--device", "cpu", "--batch-size", "4",
                           "--task-path", str(gsm8k_file), "--out", str(tmp_path / "out"),
                           "--diffusion-overrides", "sampler.steps=4", "sampler.gen_length=8", "sampler.block_length=4",
                           "--ar-overrides", "sampler.gen_length=8"])
    assert [r["returncode"] for r in runs] == [0, 0, 0]
    out = capsys.readouterr().out
    assert "| diffusion-fast-dllm |" in out and "pass@2 / maj@2" in out and "74.1" in out
    metrics = json.loads((tmp_path / "out" / "diffusion-fast-dllm" / "metrics.json").read_text())
    assert metrics["sampler"]["kv_cache"] == "dual" and metrics["problems"] == 2
    assert (tmp_path / "out" / "hub_gsm8k.md").is_file()
