"""Fast-dLLM's approximate KV caches (``sampler.kv_cache``): speed and what they cost in accuracy.

    python -m benchmarks.kv_cache speed --shape tiny --batch 1 8            # a LLaDA-shaped network, random weights
    python -m benchmarks.kv_cache speed --shape llada-1b --device cuda --batch 1 8 32
    python -m benchmarks.kv_cache accuracy sudoku4-teacher --problems 500   # a zoo model on its task

``speed`` times ``generate`` of the native LLaDA network (``sdtt_search.hf.llada``; speed
does not depend on the weights) at LLaDA's GSM8K setting scaled to the shape: prompt
``--prompt`` tokens, ``--gen`` generated in blocks of ``--block``, ``--steps`` steps
(LLaDA's default is one token per step), without a cache, with the prefix cache and
with the dual cache. ``accuracy`` runs a zoo (or checkpoint) diffusion model with
confidence decoding in blocks, each cache against none, with the same seeds: pass@1,
verified@k, the share of generated tokens equal to the uncached decode's, time per sample.
Both print a markdown table naming the machine; ``--report FILE`` also writes it
there. Ratios are only meaningful between rows of one run.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sdtt_search.machine import describe

CACHES = (None, "prefix", "dual")
#: LLaDA-style shapes (config.json fields); llada-8b is the released model's
SHAPES = {
    "tiny": dict(d_model=128, n_heads=4, n_layers=4, mlp_hidden_size=352, vocab_size=4096),
    "small": dict(d_model=512, n_heads=8, n_layers=8, mlp_hidden_size=1408, vocab_size=32768),
    "llada-1b": dict(d_model=2048, n_heads=16, n_layers=16, mlp_hidden_size=5632, vocab_size=126464),
    "llada-8b": dict(d_model=4096, n_heads=32, n_layers=32, mlp_hidden_size=12288, vocab_size=126464),
}


def llada_network(shape: str, device: str, dtype: torch.dtype):
    from sdtt_search.hf.llada import LLaDANetwork

    config = {**SHAPES[shape], "n_kv_heads": SHAPES[shape]["n_heads"], "rope": True, "rope_theta": 500000.0,
              "block_type": "llama", "activation_type": "silu", "layer_norm_type": "rms", "rms_norm_eps": 1e-5,
              "weight_tying": False, "mask_token_id": SHAPES[shape]["vocab_size"] - 1}
    torch.manual_seed(0)
    with torch.device(device):
        network = LLaDANetwork(config, config["mask_token_id"]).to(dtype)
        for p in network.parameters():
            torch.nn.init.normal_(p, std=0.02)
    return network.eval()


def speed(args) -> list[dict]:
    from sdtt_search.diffusion import SamplerConfig, build_batch, sample

    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    network = llada_network(args.shape, args.device, dtype)
    mask = network.config.mask_id
    rows = []
    for batch in args.batch:
        g = torch.Generator().manual_seed(batch)
        prompts = [torch.randint(0, mask, (args.prompt,), generator=g).tolist() for _ in range(batch)]
        b = build_batch(prompts, args.gen, pad_id=0, mask_id=mask, device=args.device)
        for kv_cache in CACHES:
            config = SamplerConfig(method="confidence", steps=args.steps, gen_length=args.gen, block_length=args.block,
                                   temperature=0.0, kv_cache=kv_cache)
            run = lambda: sample(network, b.x, b.gen_mask, b.attention_mask, config, mask_id=mask,  # noqa: E731
                                 seeds=list(range(batch)))
            run()  # warm-up
            if args.device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.repeats):
                run()
            if args.device == "cuda":
                torch.cuda.synchronize()
            seconds = (time.perf_counter() - start) / args.repeats
            rows.append({"batch": batch, "kv_cache": kv_cache or "none", "seconds": seconds,
                         "tokens_per_s": batch * args.gen / seconds})
    base = {r["batch"]: r["seconds"] for r in rows if r["kv_cache"] == "none"}
    for r in rows:
        r["speedup"] = base[r["batch"]] / r["seconds"]
    return rows


def speed_table(args, rows: list[dict]) -> str:
    shape = SHAPES[args.shape]
    lines = [f"Native LLaDA network, shape `{args.shape}` ({shape['n_layers']} layers, d_model {shape['d_model']}, "
             f"vocab {shape['vocab_size']}), random weights, {'bf16' if args.device == 'cuda' else 'fp32'} on "
             f"{args.device}; prompt {args.prompt}, generated {args.gen} in blocks of {args.block}, {args.steps} steps, "
             f"greedy; mean of {args.repeats} calls after a warm-up. Machine: {describe()}.", "",
             "| batch | kv_cache | s per call | generated tokens/s | speed-up vs none |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['kv_cache']} | {r['seconds']:.3f} | {r['tokens_per_s']:.0f} "
                     f"| {r['speedup']:.2f}x |")
    return "\n".join(lines)


def accuracy(args) -> list[dict]:
    from sdtt_search import Search
    from sdtt_search.cli import task_from_config
    from sdtt_search.loading import load_model

    model = load_model(args.model)
    task = task_from_config(model.meta["task"])
    problems = task.problems("test", limit=args.problems)
    rows, reference = [], None
    for kv_cache, refresh in [(c, None) for c in CACHES] + [("dual", r) for r in args.refresh]:
        sampler = model.default_sampler().replace(method="confidence", remasking="low_confidence",
                                                  threshold=args.threshold, steps=args.steps, block_length=args.block,
                                                  kv_cache=kv_cache, kv_refresh=refresh)
        search = Search(model, task, sampler, batch_size=64)
        search.best_of_n(problems[:8], n=1)  # warm-up
        start = time.perf_counter()
        result = search.best_of_n(problems, n=args.samples)
        seconds = time.perf_counter() - start
        texts = [c.text for r in result.problems for c in r.candidates]
        if reference is None:
            reference = texts
        same = sum(sum(a == b for a, b in zip(x, y)) for x, y in zip(texts, reference))
        total = sum(max(len(x), len(y)) for x, y in zip(texts, reference))
        acc = result.metrics["accuracy"]
        rows.append({"kv_cache": (kv_cache or "none") + (f", refresh every {refresh}" if refresh else ""),
                     "pass@1": acc["pass@1"],
                     "verified": acc.get(f"verified@{args.samples}"), "same": same / max(total, 1),
                     "ms": 1000 * seconds / (len(problems) * args.samples)})
    return rows


def accuracy_table(args, rows: list[dict]) -> str:
    threshold = f", threshold {args.threshold} (Fast-dLLM)" if args.threshold is not None else ""
    lines = [f"`{args.model}`, confidence decoding (low-confidence remasking) in blocks of {args.block}, "
             f"{args.steps} steps{threshold}, {args.problems} test problems x {args.samples}, same seeds for every row. "
             f"Machine: {describe()}.", "",
             f"| kv_cache | pass@1 | verified@{args.samples} | characters equal to the uncached decode | ms per sample |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kv_cache']} | {r['pass@1']:.3f} | {r['verified']:.3f} | {r['same']:.3f} | {r['ms']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    s.add_argument("--device", default="cpu")
    s.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    s.add_argument("--prompt", type=int, default=128)
    s.add_argument("--gen", type=int, default=256)
    s.add_argument("--block", type=int, default=32)
    s.add_argument("--steps", type=int, default=256)
    s.add_argument("--repeats", type=int, default=2)
    a = sub.add_parser("accuracy")
    a.add_argument("model")
    a.add_argument("--problems", type=int, default=500)
    a.add_argument("--samples", type=int, default=4)
    a.add_argument("--steps", type=int, default=16)
    a.add_argument("--block", type=int, default=4)
    a.add_argument("--threshold", type=float, default=None, help="Fast-dLLM's confidence threshold (default: none)")
    a.add_argument("--refresh", type=int, nargs="*", default=[], help="extra dual-cache rows refreshed every r steps")
    for p in (s, a):
        p.add_argument("--report", type=Path, default=None, help="also write the table to this markdown file")
    args = parser.parse_args()
    if args.what == "speed" and args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA GPU is visible; run on a GPU machine or use --device cpu")
    text = speed_table(args, speed(args)) if args.what == "speed" else accuracy_table(args, accuracy(args))
    print(text)
    if args.report is not None:
        args.report.write_text(text if text.endswith("\n") else text + "\n")


if __name__ == "__main__":
    main()
