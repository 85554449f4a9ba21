"""The real-scale GSM8K comparison as one command: a hub diffusion LM against a hub AR LM on a GPU.

    python -m benchmarks.hub_gsm8k --out runs/hub-gsm8k --samples 16 --limit 1319 \\
        [--diffusion hf:GSAI-ML/LLaDA-8B-Instruct] [--student runs/llada-sdtt/round-3-steps-32] \\
        [--ar hf:Qwen/Qwen2.5-7B-Instruct] [--dry-run]

Runs, one ``python -m sdtt_search.run`` each (so each resumes where it stopped), on the
GSM8K test set with the same prompts and answer format (``#### N``):

* the diffusion model with its authors' decoding, at ``--temperature``;
* the same with Fast-dLLM's decoding (threshold 0.9, the dual key/value cache);
* an SDTT LoRA student of it (``--student``: a ``distill.sdtt`` round directory), if given;
* the AR model on vLLM (``--ar-backend``), at ``--temperature``.

Each draws ``--samples`` candidates per problem; pass@k and maj@k for k = 1, 2, 4, ... N
come from that one run (expectations over size-k subsets), and the GPU seconds of k samples
per problem are the run's wall time x k / N over the problems. The report puts the
published anchors beside them. ``--dry-run`` prints the plan, the commands and a memory
estimate (weights in bf16, a diffusion call's float32 logits) without loading anything: a
hub model cannot be fetched here, so this is what the offline tests check, with tiny local
checkpoints run for real.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from sdtt_search.search.metrics import ks_up_to

from .saved_run import save_run

#: parameters and vocabulary of the hub models the defaults name (from their config.json / model cards)
KNOWN_MODELS = {
    "GSAI-ML/LLaDA-8B-Instruct": (8.02e9, 126_464),
    "Dream-org/Dream-v0-Instruct-7B": (7.62e9, 152_064),
    "Qwen/Qwen2.5-7B-Instruct": (7.62e9, 152_064),
    "meta-llama/Llama-3.1-8B-Instruct": (8.03e9, 128_256),
}
#: published GSM8K numbers to read ours against (not reproduced here)
ANCHORS = [
    ("Qwen2.5-7B-Instruct, GSM8K-CoT, batch 1, H100", "74.1", "the d3LLM comparison"),
    ("LLaDA-8B-Instruct, GSM8K-CoT, batch 1, H100", "72.6", "the d3LLM comparison"),
    ("LLaDA-8B-Instruct, gen 256, block 8", "78.6", "ML-GSAI/LLaDA EVAL.md"),
    ("LLaDA-8B-Instruct + Fast-dLLM (cache + threshold 0.9), A100", "78.5", "Fast-dLLM (Wu et al. 2025), Tab. 1"),
]
GPU_BYTES = 80e9


def model_size(spec: str) -> tuple[float | None, int | None]:
    """(parameters, vocabulary) of ``hf:<id or dir>``: a local directory's config.json, else the table."""
    name = spec.removeprefix("hf:").split("@")[0]
    directory = Path(name)
    if (directory / "config.json").is_file():
        from sdtt_search.hf.precision import count_parameters
        from sdtt_search.hf.source import parse_source, read_config

        source = parse_source(spec)
        config = read_config(source)
        return count_parameters(source, config), config.get("vocab_size")
    return KNOWN_MODELS.get(name, (None, None))


def plan(args) -> list[dict]:
    """The runs: label, kind, model and the ``sdtt_search.run`` overrides of each."""
    common = ["task=gsm8k", f"samples={args.samples}", f"limit={args.limit}", f"device={args.device}",
              f"batch_size={args.batch_size}", "plot=false"]
    if args.task_path:
        common.append(f"task.path={args.task_path}")
    temperature = f"sampler.temperature={args.temperature}"
    runs = [{"label": "diffusion", "kind": "diffusion", "model": args.diffusion,
             "overrides": [temperature, *args.diffusion_overrides]},
            {"label": "diffusion-fast-dllm", "kind": "diffusion", "model": args.diffusion,
             "overrides": [temperature, "sampler.threshold=0.9", "sampler.kv_cache=dual", *args.diffusion_overrides]}]
    if args.student:
        runs.append({"label": "student", "kind": "diffusion", "model": args.student,
                     "overrides": [temperature, *args.diffusion_overrides]})
    runs.append({"label": "ar", "kind": "ar", "model": args.ar,
                 "overrides": [temperature, f"ar_backend={args.ar_backend}", *args.ar_overrides]})
    for run in runs:
        run["output_dir"] = str(Path(args.out) / run["label"])
        run["command"] = [sys.executable, "-m", "sdtt_search.run", *common, f"model={run['model']}",
                          *run["overrides"], f"output_dir={run['output_dir']}"]
    return runs


def memory_estimate(run: dict, args) -> str:
    """A line: weights in bf16 and, for a diffusion model, one call's float32 logits."""
    params, vocab = model_size(run["model"] if run["label"] != "student" else args.diffusion)
    if params is None:
        return f"{run['label']}: size unknown (not a local directory or a model this script knows)"
    weights = 2 * params
    line = f"{run['label']}: weights {weights / 1e9:.1f} GB in bf16"
    if run["kind"] == "diffusion" and vocab:
        logits = 4 * args.batch_size * (args.prompt_tokens + args.gen_length) * vocab
        total = weights + logits
        line += (f", logits of one call {logits / 1e9:.1f} GB (batch {args.batch_size} x {args.prompt_tokens} + "
                 f"{args.gen_length} tokens x {vocab} x 4 bytes): {total / 1e9:.1f} GB")
        if total > 0.9 * GPU_BYTES:
            line += " -- over an 80 GB card: lower --batch-size"
    else:
        line += "; vLLM reserves the rest of its memory share for the key/value cache"
    return line


def report(runs: list[dict], samples: int) -> str:
    """Accuracy against GPU seconds per problem, run by run, with the anchors."""
    ks = ks_up_to(samples)
    lines = ["| run | model | " + " | ".join(f"pass@{k} / maj@{k} (s)" for k in ks) + " |",
             "|---|---|" + "---|" * len(ks)]
    for run in runs:
        path = Path(run["output_dir"]) / "metrics.json"
        if not path.is_file():
            lines.append(f"| {run['label']} | {run['model']} | " + " | ".join("not run" for _ in ks) + " |")
            continue
        metrics = json.loads(path.read_text())
        acc, per_problem = metrics["accuracy"], metrics["wall_s"] / max(metrics["problems"], 1)
        cells = [f"{acc[f'pass@{k}']:.3f} / {acc[f'maj@{k}']:.3f} ({per_problem * k / samples:.2f})" for k in ks]
        lines.append(f"| {run['label']} | {run['model']} | " + " | ".join(cells) + " |")
    lines += ["", "Published (not reproduced here):", "", "| model, setting | GSM8K | source |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {source} |" for name, value, source in ANCHORS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--diffusion", default="hf:GSAI-ML/LLaDA-8B-Instruct")
    p.add_argument("--student", default=None, help="an SDTT LoRA round directory of --diffusion")
    p.add_argument("--ar", default="hf:Qwen/Qwen2.5-7B-Instruct")
    p.add_argument("--ar-backend", default="vllm", choices=["vllm", "transformers", "auto"])
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--limit", type=int, default=1319, help="GSM8K test problems (1319: all)")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cuda")
    p.add_argument("--task-path", default=None, help="a directory with test.jsonl (or a file); else the hub's GSM8K")
    p.add_argument("--prompt-tokens", type=int, default=250, help="for the memory estimate")
    p.add_argument("--gen-length", type=int, default=256, help="for the memory estimate")
    p.add_argument("--diffusion-overrides", nargs="*", default=[], help="more sdtt_search.run key=value for diffusion runs")
    p.add_argument("--ar-overrides", nargs="*", default=[], help="more sdtt_search.run key=value for the AR run")
    p.add_argument("--out", default="runs/hub-gsm8k")
    p.add_argument("--dry-run", action="store_true", help="print the plan, commands and memory; load nothing")
    args = p.parse_args(argv)
    runs = plan(args)
    print(f"GSM8K test, {args.limit} problems x {args.samples} samples, temperature {args.temperature}, "
          f"device {args.device}, batch {args.batch_size}; runs resume in {args.out}/<run>")
    for run in runs:
        print(f"\n{memory_estimate(run, args)}\n  {shlex.join(run['command'])}")
    if args.dry_run:
        return runs
    for run in runs:
        print(f"\n== {run['label']}: {run['model']}", flush=True)
        done = subprocess.run(run["command"], check=False)
        run["returncode"] = done.returncode
        if done.returncode != 0:
            print(f"{run['label']} failed (exit {done.returncode}); the others go on", file=sys.stderr)
    text = report(runs, args.samples)
    print("\n" + text)
    save_run(args.out, "hub_gsm8k", text, {"runs": runs})
    return runs


if __name__ == "__main__":
    main()
