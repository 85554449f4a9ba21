"""Fast-dLLM's decoding of a bidirectional diffusion model: threshold steps and its KV cache.

    python examples/fast_dllm.py [MODEL] [SAMPLES] [LIMIT] [DEVICE]
    python examples/fast_dllm.py sudoku4-teacher 4 100                      # offline, a zoo model
    python examples/fast_dllm.py hf:GSAI-ML/LLaDA-8B-Instruct 1 100 cuda    # LLaDA on GSM8K (network, GPU)

Decodes the same problems with the same seeds four ways: the model's own sampler with
confidence decoding in blocks, Fast-dLLM's threshold decoding (every token with confidence
>= 0.9 per step), and each of those with the dual KV cache (``sampler.kv_cache="dual"``: a
block's later steps run only the block, reusing the other columns' keys and values from
its first step). Prints pass@1, verified@N (tasks with a verifier), network calls per
problem and seconds per sample. The cache is an approximation: compare its accuracy to
the uncached rows before relying on it (``python -m benchmarks.kv_cache accuracy``).
"""
import dataclasses
import sys
import time

from sdtt_search import Search, load_model
from tasks import load_task


def main(model_name: str = "sudoku4-teacher", samples: int = 4, limit: int = 100, device: str = "cpu") -> dict:
    model = load_model(model_name, device=device)
    if model_name.startswith("hf:"):
        task = load_task("gsm8k")
        base = model.default_sampler()
    else:
        meta = model.meta["task"]
        task = load_task(meta["name"], **(meta.get("options") or {}))
        base = dataclasses.replace(model.default_sampler(), method="confidence", remasking="low_confidence",
                                   block_length=model.default_sampler().block_length or 4, threshold=None)
    if samples > 1:
        base = dataclasses.replace(base, temperature=1.0)  # distinct candidates
    problems = task.problems("test", limit=limit)
    settings = {
        "blocks": base,
        "blocks + dual cache": dataclasses.replace(base, kv_cache="dual"),
        "threshold 0.9": dataclasses.replace(base, threshold=0.9),
        "threshold 0.9 + dual cache (Fast-dLLM)": dataclasses.replace(base, threshold=0.9, kv_cache="dual"),
    }
    print(f"{len(problems)} {task.name} test problems x {samples}, {model_name}, blocks of {base.block_length}, "
          f"{base.steps} steps")
    print(f"| decoding | pass@1 | verified@{samples} | network calls per problem (a call serves a batch) | s per sample |")
    print("|---|---|---|---|---|")
    rows = {}
    for name, sampler in settings.items():
        search = Search(model, task, sampler, batch_size=32)
        start = time.perf_counter()
        result = search.best_of_n(problems, samples)
        seconds = (time.perf_counter() - start) / (len(problems) * samples)
        accuracy = result.metrics["accuracy"]
        row = {"pass@1": accuracy["pass@1"], "verified": accuracy.get(f"verified@{samples}", float("nan")),
               "calls": result.metrics["throughput"]["forward_passes"] / len(problems), "seconds": seconds}
        rows[name] = row
        print(f"| {name} | {row['pass@1']:.3f} | {row['verified']:.3f} | {row['calls']:.1f} | {row['seconds']:.4f} |")
    return rows


if __name__ == "__main__":
    args = sys.argv[1:]
    types = (str, int, int, str)
    main(*(t(a) for t, a in zip(types, args)))
