"""Measurements on this machine: throughput, the forward's share of a generate call, FLOPs
per generated token, the best-of-N search run (accuracy), and the side-by-side timings of
the many-problems and one-problem-at-a-time regimes."""
from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from contextlib import contextmanager

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from sdtt_search.model.invariant import batch_invariance
from sdtt_search.search.engine import Search

from .models import describe_model, generated_tokens, load_spec, network_of, prompts_for


def _sync(module) -> None:
    if module is not None and torch.cuda.is_available():
        device = next(module.parameters()).device
        if device.type == "cuda":
            torch.cuda.synchronize(device)


@contextmanager
def forward_timer(module: torch.nn.Module | None):
    """Accumulate the seconds spent inside ``module.forward`` (and ``forward_span``, the
    prefix-cached forward of causal denoisers, and ``forward_replace``, the approximate
    caches' forward of bidirectional ones) into the yielded dict."""
    box = {"seconds": 0.0, "calls": 0}
    if module is None:
        yield box
        return
    names = [n for n in ("forward", "forward_span", "forward_replace") if hasattr(module, n)]
    saved = {n: (getattr(module, n), n in module.__dict__) for n in names}

    def timed(original):
        def call(*args, **kwargs):
            _sync(module)
            start = time.perf_counter()
            out = original(*args, **kwargs)
            _sync(module)
            box["seconds"] += time.perf_counter() - start
            box["calls"] += 1
            return out
        return call

    for name in names:
        setattr(module, name, timed(saved[name][0]))
    try:
        yield box
    finally:
        for name, (original, had_own) in saved.items():
            if had_own:
                setattr(module, name, original)
            else:
                delattr(module, name)  # back to the class method


def throughput(model, task, problems, batch: int, repeats: int) -> dict:
    """samples/s and generated tokens/s at one batch size (median of ``repeats`` after a warm-up)."""
    sampler = model.default_sampler()
    prompts = prompts_for(task, problems, batch)
    model.generate(prompts, sampler, seeds=range(batch))
    times, tokens, passes = [], [], []
    for r in range(repeats):
        start = time.perf_counter()
        out = model.generate(prompts, sampler, seeds=range((r + 1) * batch, (r + 2) * batch))
        times.append(time.perf_counter() - start)
        tokens.append(generated_tokens(out))
        passes.append(out.nfe)
    t = statistics.median(times)
    return {"batch": batch, "seconds": t, "samples_per_s": batch / t, "tokens_per_s": statistics.median(tokens) / t,
            **pass_counts(statistics.median(tokens) / batch, statistics.median(passes))}


def pass_counts(tokens_per_sample: float, passes: float) -> dict:
    """The machine-free pair beside tokens/s: forward passes a sample goes through (the
    call's network calls: every row of a call is in each) and generated tokens per pass."""
    return {"forward_passes": passes, "tokens_per_pass": tokens_per_sample / passes if passes else 0.0}


def interleaved_timing(models: dict, task, problems, batches: list[int], repeats: int, samples: int,
                       search_batch: int, search_calls: int) -> dict:
    """Side-by-side timing, robust to a shared machine's drifting load: rounds in which
    every model (in a rotating order) runs every batch size once and one search slice
    (``Search.generate_problems`` over enough problems for ``search_calls`` calls of ``search_batch``
    rows, generate + verify); round 0 is the warm-up, then the median of ``repeats``
    rounds. Returns per model: the throughput rows and the search seconds per sample.

    Each round also times a verify-and-stop round: one candidate of each of
    ``search_calls * search_batch`` problems (generate + verify), packed as a search packs
    the open problems of a round of one sample. Its seconds per sample can differ from the
    search slice's, whose calls hold many candidates of one prompt (a prefix cache runs a
    shared prompt once)."""
    names = list(models)
    raw = {n: {"times": {b: [] for b in batches}, "tokens": {b: [] for b in batches},
               "passes": {b: [] for b in batches}, "search": [], "round": []} for n in names}
    chunk = problems[: max(1, search_calls * search_batch // samples)]
    distinct = problems[: search_calls * search_batch]
    for r in range(repeats + 1):
        for n in names[r % len(names):] + names[: r % len(names)]:
            model = models[n]
            sampler = model.default_sampler()
            for b in batches:
                prompts = prompts_for(task, problems, b)
                start = time.perf_counter()
                out = model.generate(prompts, sampler, seeds=range(r * b, (r + 1) * b))
                if r:
                    raw[n]["times"][b].append(time.perf_counter() - start)
                    raw[n]["tokens"][b].append(generated_tokens(out))
                    raw[n]["passes"][b].append(out.nfe)
            start = time.perf_counter()
            Search(model, task, sampler, batch_size=search_batch, seed=1000 + r).generate_problems(chunk, samples)
            if r:
                raw[n]["search"].append((time.perf_counter() - start) / (len(chunk) * samples))
            start = time.perf_counter()
            Search(model, task, sampler, batch_size=search_batch, seed=1000 + r).generate_problems(distinct, 1)
            if r:
                raw[n]["round"].append((time.perf_counter() - start) / len(distinct))
    out = {}
    for n in names:
        rows = []
        for b in batches:
            t = statistics.median(raw[n]["times"][b])
            tokens = statistics.median(raw[n]["tokens"][b])
            rows.append({"batch": b, "seconds": t, "samples_per_s": b / t, "tokens_per_s": tokens / t,
                         **pass_counts(tokens / b, statistics.median(raw[n]["passes"][b])),
                         "repeats": raw[n]["times"][b]})
        out[n] = {"throughput": rows, "seconds_per_sample": statistics.median(raw[n]["search"]),
                  "seconds_per_sample_repeats": raw[n]["search"],
                  "seconds_per_round_sample": statistics.median(raw[n]["round"]),
                  "seconds_per_round_sample_repeats": raw[n]["round"]}
    return out


def forward_share(model, task, problems, batch: int) -> tuple[float | None, int | None]:
    """Fraction of one generate call's wall time spent inside the network forward, and
    the sampler steps it took (``batch`` rows; (None, None) when the network is out of
    reach): its network calls, counted without ``window`` (a windowed step is several
    calls; the tokens are the same, ``SamplerConfig.window``)."""
    module = network_of(model)
    if module is None:
        return None, None
    sampler = model.default_sampler()
    prompts = prompts_for(task, problems, batch)
    model.generate(prompts, sampler, seeds=range(batch))
    with forward_timer(module) as box:
        start = time.perf_counter()
        model.generate(prompts, sampler, seeds=range(batch, 2 * batch))
        total = time.perf_counter() - start
    steps = box["calls"]
    if getattr(sampler, "window", None) is not None:
        with forward_timer(module) as unwindowed:
            model.generate(prompts, dataclasses.replace(sampler, window=None), seeds=range(batch, 2 * batch))
        steps = unwindowed["calls"]
    return (box["seconds"] / total if total > 0 else None), steps


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# Kernels FlopCounterMode has no formula for (it counts them as 0): the CPU flash attention
# that F.scaled_dot_product_attention dispatches to on CPU (QK^T and AV: 4 * B * H * Lq * Lk * D).
EXTRA_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}


def count_flops(fn) -> tuple[int, object]:
    """(FLOPs, result) of ``fn()`` (matmuls + attention): the model's FLOPs, so with the
    batch-invariant kernels off (their padding tiles are not the model's work)."""
    with batch_invariance(False), FlopCounterMode(display=False, custom_mapping=EXTRA_FLOPS) as counter:
        result = fn()
    return counter.get_total_flops(), result


def flops_per_token(model, task, problems, batch: int, flop_model=None) -> float:
    """FLOPs of one generate call divided by the tokens it generated (``flop_model``: a
    stand-in with the same network, e.g. the transformers twin of a vLLM model)."""
    subject = flop_model or model
    sampler = subject.default_sampler()
    prompts = prompts_for(task, problems, batch)
    flops, out = count_flops(lambda: subject.generate(prompts, sampler, seeds=range(batch)))
    return flops / max(generated_tokens(out), 1)


def search_run(model, task, problems, samples: int, batch: int) -> dict:
    """Best-of-N over the problems: pass@1 (with its standard error over problems), seconds
    per sample, per-problem (verified, correct) lists."""
    sampler = model.default_sampler()
    result = Search(model, task, sampler, batch_size=batch).best_of_n(problems, samples)
    seconds = result.metrics["wall_s"]  # generate + verify; the accuracy curves after it are not search time
    ordered = {"ordered": True} if sampler.stratify else {}  # candidate i is not exchangeable with j
    per_problem = [{"verified": [bool(c.verified) for c in r.candidates], "correct": [bool(c.correct) for c in r.candidates],
                    **ordered} for r in result.problems]
    rates = [sum(p["correct"]) / len(p["correct"]) for p in per_problem]  # every candidate is a draw of the model
    se = statistics.stdev(rates) / math.sqrt(len(rates)) if len(rates) > 1 else 0.0
    return {"seconds": seconds, "wall_seconds_per_sample": seconds / (len(problems) * samples),
            "pass@1": statistics.mean(rates), "pass@1_se": se,
            "verified@N": result.metrics["accuracy"].get(f"verified@{samples}") or 0.0, "per_problem": per_problem}


def latency_ks(samples: int) -> list[int]:
    """Sample counts timed in the latency regime: 1, 2, 3, 4, 6, 8, 12, ... (powers of two
    and the points halfway between them) up to and including ``samples``."""
    ks, p = [], 1
    while p < samples:
        ks += [p] if p < 2 else [p, p + p // 2]
        p *= 2
    return sorted({k for k in ks if k < samples} | {samples})


def latency_timing(models: dict, task, problems, ks: list[int], repeats: int, per_round: int) -> dict:
    """Seconds to draw and verify k samples of one problem in one call (batch k), per model
    and k: rounds in which every model (rotating order) runs ``per_round`` problems at every
    k; round 0 is the warm-up, then the median over the other rounds' problems."""
    names = list(models)
    raw = {n: {k: [] for k in ks} for n in names}
    for r in range(repeats + 1):
        for n in names[r % len(names):] + names[: r % len(names)]:
            model = models[n]
            sampler = model.default_sampler()
            for k in ks:
                for i in range(per_round):
                    problem = problems[(r * per_round + i) % len(problems)]
                    search = Search(model, task, sampler, batch_size=k, seed=2000 + 100 * r + i)
                    start = time.perf_counter()
                    search.generate_problems([problem], k)
                    if r:
                        raw[n][k].append(time.perf_counter() - start)
    return {n: {k: statistics.median(v) for k, v in raw[n].items()} for n in names}


def measure_model(model, spec: str, args: argparse.Namespace, task, problems, search: dict | None = None) -> dict:
    """Forward share, FLOPs per token and the best-of-N run (accuracy) of one model
    (``search``: a saved run's accuracy block, reused instead of searching again)."""
    info = describe_model(model)
    info["forward_share"], info["calls_per_generate"] = forward_share(model, task, problems, args.share_batch)
    flop_model, info["flops_source"] = None, "counted"
    if model.kind == "ar" and network_of(model) is None:  # vLLM: count the same network under transformers
        flop_model, info["flops_source"] = (load_spec(spec, args.device, "transformers", force_backend=True),
                                              "transformers twin")
        flop_model.default_sampler = model.default_sampler
    info["flops_per_token"] = flops_per_token(model, task, problems, args.flops_batch, flop_model)
    info["search"] = search_run(model, task, problems, args.samples, args.search_batch) if search is None else search
    return info
