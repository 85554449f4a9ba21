"""GPU measurements for benchmarks/gpu.sh (also runs on CPU with --quick, to test it).

    python -m benchmarks.gpu_bench --device cuda --out gpu-out
    python -m benchmarks.gpu_bench --device cpu --quick --out /tmp/gpu-out

1. Attention backends: forward of a denoiser with xformers against SDPA (tokens/s, max |diff|).
2. Generation throughput of a diffusion teacher (T steps), its student (T/8 steps)
   and an AR twin of the same shape (KV-cache decoding with ``transformers``
   ``generate``, every row forced to the full length) at batch 1..256, and the
   smallest batch at which the AR twin generates more tokens/s than the student.
   Random weights: speed does not depend on what the weights say (the AR rows are
   forced to the same length as the diffusion completions).
3. The zoo's Sudoku and CD3 models (teacher, students, AR twin) through ``frontier.throughput``.
4. Training: optimiser steps/s and tokens/s of the MDLM loss (forward, backward, AdamW;
   bf16 autocast on CUDA) per model size and attention backend, peak memory, and the
   examples/s the CPU-side Countdown example stream delivers (what feeds a GPU run):
   the numbers to size a GPU training run by.
Writes ``<out>/gpu.json`` and ``<out>/gpu.md`` naming the device, after every section
(so a timeout keeps what was measured; ``complete`` is true at the end; a section that
fails is recorded with its error and the others still run). Everything runs in-process
(the local executor) and AR models use the transformers backend: the GPU machine has no
ray or vllm.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from distill.setup import build_tokenizer, make_stream, measure_gen_length
from sdtt_search.diffusion import SamplerConfig, generate, mdlm_loss
from sdtt_search.loading import load_model
from sdtt_search.machine import describe
from sdtt_search.model import Denoiser, ModelConfig
from sdtt_search.model.attention import xformers_available
from sdtt_search.model.llama import CausalLMConfig
from sdtt_search.tokenizer import Tokenizer
from tasks import load_task

from .frontier.measure import throughput


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn()`` after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def attention_backends(size: str, points: list[tuple[int, int]], device: torch.device, repeats: int) -> list[dict]:
    """Denoiser forward, xformers vs SDPA, same weights and inputs (bf16 autocast on CUDA)."""
    rows = []
    backends = ["sdpa"] + (["xformers"] if device.type == "cuda" and xformers_available() else [])
    torch.manual_seed(0)
    base = ModelConfig.from_size(size, vocab_size=50258 if size != "tiny" else 64, mask_id=0, dropout=0.0)
    models = {}
    for backend in backends:
        m = Denoiser(ModelConfig.from_dict({**base.to_dict(), "attention_backend": backend})).to(device).eval()
        if models:
            m.load_state_dict(next(iter(models.values())).state_dict())
        models[backend] = m
    amp = torch.bfloat16 if device.type == "cuda" else None
    for batch, length in points:
        x = torch.randint(1, base.vocab_size, (batch, length), device=device)
        mask = torch.ones(batch, length, dtype=torch.bool, device=device)
        mask[0, : length // 4] = False  # one left-padded row: the masked path of each kernel
        outs = {}
        for backend, m in models.items():
            def call(m=m, x=x, mask=mask):
                with torch.no_grad(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    return m(x, attention_mask=mask)
            seconds = timed(call, device, repeats)
            outs[backend] = call()
            rows.append({"backend": backend, "batch": batch, "length": length, "tokens_per_s": batch * length / seconds})
        if len(outs) == 2:
            rows[-1]["max_abs_diff_vs_sdpa"] = float((outs["xformers"] - outs["sdpa"])[mask].abs().max())
    return rows


def crossover(size: str, gen_length: int, prompt_length: int, teacher_steps: int, batches: list[int],
              device: torch.device, repeats: int) -> dict:
    """tokens/s of teacher, student and AR twin of one shape; the batch where AR overtakes the student."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = Tokenizer.char_level("abcdefghijklmnopqrstuvwxyz0123456789 ")
    shape = ModelConfig.from_size(size, vocab_size=tok.vocab_size, mask_id=tok.mask_id, dropout=0.0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    denoiser = Denoiser(shape).to(device).eval()
    ar_cfg = CausalLMConfig(vocab_size=tok.vocab_size, hidden_size=shape.hidden_size, n_layers=shape.n_layers,
                            n_heads=shape.n_heads, intermediate_size=shape.mlp_ratio * shape.hidden_size,
                            max_length=max(shape.max_length, prompt_length + gen_length))
    ar = LlamaForCausalLM(LlamaConfig(**ar_cfg.to_hf(bos_id=None, eos_id=tok.eos_id, pad_id=tok.pad_id))).to(device, dtype).eval()
    prompt = "a" * prompt_length
    results = {"teacher": [], "student": [], "ar": []}
    amp = torch.bfloat16 if device.type == "cuda" else None
    for batch in batches:
        for role, steps in (("teacher", teacher_steps), ("student", max(teacher_steps // 8, 1))):
            sampler = SamplerConfig(method="ancestral", steps=steps, cache=False)

            def run(sampler=sampler, batch=batch):
                with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    generate(denoiser, tok, [prompt] * batch, sampler, seeds=range(batch), gen_length=gen_length)
            seconds = timed(run, device, repeats)
            results[role].append({"batch": batch, "steps": steps, "tokens_per_s": batch * gen_length / seconds})
        ids = torch.full((batch, prompt_length), 4, dtype=torch.long, device=device)

        def run_ar(ids=ids):
            with torch.no_grad():
                ar.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=gen_length,
                            min_new_tokens=gen_length, do_sample=True, top_k=0, pad_token_id=tok.pad_id)
        seconds = timed(run_ar, device, repeats)
        results["ar"].append({"batch": batch, "tokens_per_s": batch * gen_length / seconds})
    over = [s["batch"] for s, a in zip(results["student"], results["ar"]) if a["tokens_per_s"] > s["tokens_per_s"]]
    return {"size": size, "gen_length": gen_length, "prompt_length": prompt_length, "teacher_steps": teacher_steps,
            "parameters": {"diffusion": denoiser.num_parameters, "ar": sum(p.numel() for p in ar.parameters())},
            "results": results, "ar_overtakes_student_at_batch": over[0] if over else None}


def training_throughput(sizes: list[str], batch: int, length: int, steps: int, device: torch.device,
                        stream_workers: tuple[int, ...] = (0, 4, 8)) -> dict:
    """MDLM training steps/s per model size and attention backend, and the example stream's rate."""
    rows = []
    backends = ["sdpa"] + (["xformers"] if device.type == "cuda" and xformers_available() else [])
    amp = torch.bfloat16 if device.type == "cuda" else None
    for size in sizes:
        for backend in backends:
            torch.manual_seed(0)
            cfg = ModelConfig.from_size(size, vocab_size=64, mask_id=0, dropout=0.0)
            model = Denoiser(ModelConfig.from_dict({**cfg.to_dict(), "attention_backend": backend})).to(device).train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
            x = torch.randint(1, 64, (batch, length), device=device)
            maskable = torch.zeros_like(x, dtype=torch.bool)
            maskable[:, length // 2:] = True
            generator = torch.Generator().manual_seed(0)

            def step(model=model, opt=opt, x=x, maskable=maskable, generator=generator):
                with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    loss = mdlm_loss(model, x, maskable, mask_id=0, generator=generator).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds = timed(step, device, steps)
            rows.append({"size": size, "backend": backend, "parameters": model.num_parameters, "batch": batch,
                         "length": length, "steps_per_s": 1 / seconds, "tokens_per_s": batch * length / seconds,
                         "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None})
            del model, opt, step
            if device.type == "cuda":
                torch.cuda.empty_cache()
    task = load_task("countdown", n=3)
    tokenizer = build_tokenizer(task, {"kind": "numbers", "max_number": 999}, 0)
    gen_length = measure_gen_length(task, tokenizer, 0)
    stream_rates = {}
    for workers in stream_workers:  # train.data_workers: examples made in that many processes
        stream = make_stream(task, tokenizer, gen_length, 0, 0, 1, workers=workers)
        for _ in range(max(2, workers)):  # warm-up: start the workers, fill their queues once
            stream.next_batch(256)
        start = time.perf_counter()
        batches = 8 * max(1, workers)
        for _ in range(batches):
            stream.next_batch(256)
        stream_rates[str(workers)] = batches * 256 / (time.perf_counter() - start)
        stream.close()
    return {"rows": rows, "countdown_examples_per_s": stream_rates["0"], "examples_per_s_by_data_workers": stream_rates}


ZOO_SETS = (
    (("sudoku", {"size": 4}), ("sudoku4-teacher", "sudoku4-sdtt-4", "sudoku4-ar")),
    # the countdown-cd3-num-* students are block-causal: they decode with the prefix KV cache
    (("countdown", {}), ("countdown-cd3-num-sdtt-8", "countdown-cd3-num-sdtt-4",
                         "countdown-cd3-num-teacher", "countdown-cd3-ar")),
)


def zoo_throughput(batches: list[int], device: str, repeats: int) -> list[dict]:
    rows = []
    for (task_name, options), names in ZOO_SETS:
        task = load_task(task_name, **options)
        problems = task.problems("test", limit=64)
        for name in names:
            model = load_model(name, device=device, ar_backend="transformers")
            for b in batches:
                rows.append({"model": name, **throughput(model, task, problems, b, repeats)})
    return rows


def markdown(report: dict) -> str:
    lines = [f"## GPU checks ({report['device_name']}, {report['when']})", "",
             (f"Machine: {report['machine']}. Command: `{report['command']}`. In-process (local executor; no ray), "
              "AR models on the transformers backend (no vllm on this machine)."), ""]
    for section, error in report.get("errors", {}).items():
        lines += [f"**{section} failed**: `{error}`", ""]
    if "attention" in report:
        lines += ["Attention backends (denoiser forward, bf16 autocast on CUDA, tokens/s):", "",
                  "| backend | batch x length | tokens/s | max abs diff vs SDPA |", "|---|---|---|---|"]
        for r in report["attention"]:
            diff = r.get("max_abs_diff_vs_sdpa")
            lines.append(f"| {r['backend']} | {r['batch']} x {r['length']} | {r['tokens_per_s']:.0f} | "
                         f"{'' if diff is None else f'{diff:.3g}'} |")
        if not report.get("xformers"):
            lines += ["", "xformers is not importable here: SDPA only."]
    if "crossover" in report:
        c = report["crossover"]
        lines += ["", (f"Generation tokens/s, `{c['size']}` shape ({c['parameters']['diffusion'] / 1e6:.0f}M diffusion, "
                       f"{c['parameters']['ar'] / 1e6:.0f}M AR, random weights), prompt {c['prompt_length']}, gen "
                       f"{c['gen_length']}; AR = transformers generate with a KV cache, rows forced to full length:"),
                  "", "| batch | teacher | student | AR | AR / student |", "|---|---|---|---|---|"]
        for t, s, a in zip(c["results"]["teacher"], c["results"]["student"], c["results"]["ar"]):
            lines.append(f"| {t['batch']} | {t['tokens_per_s']:.0f} ({t['steps']} steps) | {s['tokens_per_s']:.0f} "
                         f"({s['steps']} steps) | {a['tokens_per_s']:.0f} | {a['tokens_per_s'] / s['tokens_per_s']:.2f} |")
        lines += ["", f"AR overtakes the student from batch: {c['ar_overtakes_student_at_batch'] or 'never (in this range)'}"]
    if "zoo" in report:
        lines += ["", "Zoo models (frontier.throughput; samples/s | generated tokens/s):", "",
                  "| model | batch | samples/s | tokens/s |", "|---|---|---|---|"]
        for r in report["zoo"]:
            lines.append(f"| {r['model']} | {r['batch']} | {r['samples_per_s']:.1f} | {r['tokens_per_s']:.0f} |")
    if "training" in report:
        tr = report["training"]
        lines += ["", "Training (MDLM loss, forward + backward + AdamW, bf16 autocast on CUDA, random tokens):", "",
                  "| size | params | backend | batch x length | steps/s | tokens/s | peak GiB |", "|---|---|---|---|---|---|---|"]
        for r in tr["rows"]:
            peak = r["peak_memory_gib"]
            lines.append(f"| {r['size']} | {r['parameters'] / 1e6:.1f}M | {r['backend']} | {r['batch']} x {r['length']} | "
                         f"{r['steps_per_s']:.1f} | {r['tokens_per_s']:.0f} | {'' if peak is None else f'{peak:.2f}'} |")
        rates = tr.get("examples_per_s_by_data_workers", {"0": tr["countdown_examples_per_s"]})
        lines += ["", "The Countdown example stream (number tokens, batches of 256) delivers "
                  + ", ".join(f"{rate:.0f} examples/s with train.data_workers={w}" for w, rate in rates.items()) + "."]
    if not report.get("complete"):
        lines += ["", "(incomplete: the run stopped or is still running)"]
    return "\n".join(lines) + "\n"


def save(report: dict, out: Path) -> None:
    (out / "gpu.json").write_text(json.dumps(report, indent=1))
    (out / "gpu.md").write_text(markdown(report))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny shapes and batches (a CPU smoke test)")
    p.add_argument("--out", default="gpu-out")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU; run on the GPU machine or pass --device cpu --quick")
    if args.quick:
        size, points, batches, gen, prompt, steps, repeats = "tiny", [(2, 32)], [1, 4], 16, 8, 8, 1
        train_sizes, train_batch, train_length, train_steps, stream_workers = ["tiny"], 8, 32, 2, (0, 2)
    else:
        size, points, batches, gen, prompt, steps, repeats = (
            "small", [(8, 256), (32, 512), (64, 1024)], [1, 8, 16, 32, 64, 128, 256], 128, 64, 64, 3)
        train_sizes, train_batch, train_length, train_steps, stream_workers = (
            ["tiny", "mini", "small"], 256, 128, 10, (0, 4, 8))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": describe(), "when": time.strftime("%Y-%m-%d"), "complete": False,
              "command": "python -m benchmarks.gpu_bench " + " ".join(sys.argv[1:] if argv is None else argv),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "xformers": device.type == "cuda" and xformers_available(), "executor": "local",
              "ar_backend": "transformers", "errors": {}}
    save(report, out)
    sections = [("attention", lambda: attention_backends(size, points, device, repeats)),
                ("training", lambda: training_throughput(train_sizes, train_batch, train_length, train_steps, device,
                                                        stream_workers)),
                ("crossover", lambda: crossover(size, gen, prompt, steps, batches, device, repeats)),
                ("zoo", lambda: zoo_throughput(batches, str(device), repeats))]
    for name, fn in sections:
        start = time.perf_counter()
        try:
            report[name] = fn()
        except Exception as exc:  # record it, keep measuring the rest
            report["errors"][name] = f"{type(exc).__name__}: {exc}"
            if args.quick:
                raise
        print(f"[gpu_bench] {name}: {time.perf_counter() - start:.1f} s", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        save(report, out)
    report["complete"] = True
    save(report, out)
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
