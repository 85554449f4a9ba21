"""The head-to-head frontier: diffusion teacher, SDTT students and the AR twin, in one run on one machine.

    python benchmarks/frontier.py --task sudoku \\
        --models sudoku4-teacher sudoku4-sdtt-4 sudoku4-sdtt-2 sudoku4-ar \\
        --problems 100 --samples 64 --batches 1 8 64 256 --out benchmarks/runs/<date>-sudoku-frontier

A model is a zoo name or a checkpoint directory, optionally with sampler overrides
(``countdown-cd3-num-teacher:threshold=0.9,steps=12``) or an AR engine
(``sudoku4-ar:ar_backend=transformers``). For every model:
  * samples/s and generated tokens/s at each batch size (same prompts for every model;
    a warm-up call, then the median of ``--repeats`` calls); generated tokens are the
    tokens of each completion up to and including EOS;
  * the share of sampling wall time spent inside the network's forward (the rest is
    sampler overhead: sampling, bookkeeping, generate's loop); "n/a" for vLLM, whose
    forward is out of reach;
  * FLOPs per generated token, counted by ``torch.utils.flop_counter`` (plus the CPU
    flash-attention kernel it does not know) over one generate call: diffusion = every
    step over the whole sequence; AR = prefill + cached decode steps (rows that ended
    early still cost their padded steps). For vLLM the same checkpoint is counted under
    transformers;
  * best-of-N search (``Search``, ``--samples`` per problem, ``--search-batch`` rows per
    call): pass@1, seconds per sample (wall time of the whole search incl. verifying,
    divided by the samples drawn), and the frontier: for a wall-clock budget of B seconds
    per problem a model affords k = floor(B / seconds per sample) samples and reaches the
    exact verified@k estimated from its N samples (k > N is capped at N and marked ``*``).
  * the latency regime (``--latency-problems``): one problem at a time, its k samples in
    one generate call (an interactive user waiting for an answer), k = 1, 2, 3, 4, 6, 8,
    ... N; a budget of B seconds affords the largest k whose measured latency (generate +
    verify, median over problems and rounds) is <= B. Few rows per call: here a model's
    number of sequential network calls counts, where the throughput regime counts FLOPs.
    With it, verify-and-stop (``Search.best_of_n(round_size=r)``): rounds of r samples of
    one problem until one verifies, at most K; its mean latency per problem is the timed
    latency of r samples times the expected rounds, from each problem's verified count
    (samples are i.i.d., so the drawn ones in random order are a fair stopping sequence),
    and its accuracy is verified@K. A mean budget B buys each model's best (r, K).
  * cascades (``cascade_pricing``, exact from the accuracy runs): each student then an AR
    engine for the problems it left unverified (reported apart: the AR twin is part of
    it), and each family's best cascade among its own models: a student then another
    student (e.g. the same one with a hotter head, ``head_tokens=3,head_temperature=1.3``
    in its spec), the AR engines among themselves, students against AR (one of the
    targets: no AR model is on the student side).
Then: student/teacher speed-ups side by side, the search targets, per budget whether
the best SDTT student + verifier or the best AR engine + verifier solves more (margins
with 95 % paired intervals over the problems), and the break-even table: how many times
the AR model's samples/s each student needs to match it at k samples (machine-free).
Writes ``<out>/frontier.json``, ``<out>/frontier.png`` and ``<out>/frontier.md`` (the
tables, naming the machine): each run keeps its own report; docs/results.md cites it. Only ratios within one run
are comparable.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import math
import statistics
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from sdtt_search.cli import task_from_config
from sdtt_search.fingerprint import model_fingerprint
from sdtt_search.diffusion import SamplerConfig
from sdtt_search.loading import load_ar_as_denoiser, load_model
from sdtt_search.machine import describe
from sdtt_search.model.invariant import batch_invariance
from sdtt_search.search.engine import Search
from sdtt_search.search.metrics import verified_at_k

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cascade_pricing import cascade_best, first_verified, nothing, ordered_stop_options, stop_options  # noqa: E402



# ---------------------------------------------------------------------------- model plumbing
def network_of(model) -> torch.nn.Module | None:
    """The torch module whose forward does the model's arithmetic (None when out of reach, e.g. vLLM)."""
    if model.kind == "ar":
        return getattr(model.backend, "model", None)
    return model.model


def bar_steps(meta: dict, steps: int) -> int:
    """The step count the speed bar divides by: the run's steps, or the SDTT round's
    own count when that is fewer (a threshold student records a larger step budget than
    the round it was distilled in: countdown-cd3-num-sdtt-8 decodes within 10)."""
    sdtt = meta.get("sdtt") or {}
    if sdtt.get("teacher_steps") and sdtt.get("round") and sdtt.get("layout", "blocks") != "tail":
        return min(steps, int(sdtt["teacher_steps"]) // 2 ** int(sdtt["round"]))
    return steps


def student_steps(d: dict) -> float:
    """What the speed bar divides by for a model of ``report["models"]``: ``bar_steps``, or
    the sampler steps a generate took when fewer (``calls_per_generate``: its network calls
    without the window, ``forward_share``); a threshold sampler whose step budget never
    binds, e.g. ``steps=12`` on the 4-call student, is held to the steps it takes."""
    steps = d.get("bar_steps", d["steps"])
    calls = d.get("calls_per_generate")
    return min(steps, calls) if calls else steps


def describe_model(model) -> dict:
    meta = model.meta
    if model.kind == "ar":
        role = "ar"
    elif meta.get("sdtt"):
        role = "student"
    else:
        role = "teacher"
    sampler = model.default_sampler()
    params = getattr(model, "num_parameters", None) or sum(p.numel() for p in model.model.parameters())
    return {"kind": model.kind, "role": role, "steps": sampler.steps, "bar_steps": bar_steps(meta, sampler.steps),
            "sampler": sampler.method,
            "gen_length": int(sampler.gen_length or model.gen_length), "parameters": int(params),
            "backend": getattr(model, "backend_name", "sdtt-search")}


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


def prompts_for(task, problems, batch: int) -> list[str]:
    texts = [task.format_prompt(p) for p in problems]
    return (texts * (batch // len(texts) + 1))[:batch]


def generated_tokens(out) -> int:
    return sum(len(lps) for lps in out.logprobs)


def _value(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def load_spec(spec: str, device: str, ar_backend: str, *, force_backend: bool = False):
    """``name`` or ``name:key=value,key=value`` (sampler overrides, e.g.
    ``countdown-cd3-num-teacher:threshold=0.9,steps=12``; ``ar_backend=`` picks an AR
    model's engine unless ``force_backend``; ``as_denoiser=true`` reads an AR twin as a
    causal denoiser decoded one token per call with the prefix cache): the model with
    that default sampler."""
    name, _, overrides = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    values = {}
    for item in filter(None, overrides.split(",")):
        key, _, raw = item.partition("=")
        values[key] = _value(raw)
    spec_backend = values.pop("ar_backend", ar_backend)  # e.g. countdown-cd3-ar:ar_backend=transformers
    ar_backend = ar_backend if force_backend else spec_backend
    if values.pop("as_denoiser", False):  # an AR twin through our block sampler with the prefix cache
        model = load_ar_as_denoiser(name, device=device)
    else:
        model = load_model(name, device=device, ar_backend=ar_backend)
    if values:
        sampler = model.default_sampler().replace(**values)
        model.default_sampler = lambda: SamplerConfig.from_dict(sampler.to_dict())
    return model


def same_task(a: dict, b: dict) -> bool:
    return (a or {}).get("name") == (b or {}).get("name") and (a or {}).get("options") == (b or {}).get("options")


# ---------------------------------------------------------------------------- measurements
def throughput(model, task, problems, batch: int, repeats: int) -> dict:
    """samples/s and generated tokens/s at one batch size (median of ``repeats`` after a warm-up)."""
    sampler = model.default_sampler()
    prompts = prompts_for(task, problems, batch)
    model.generate(prompts, sampler, seeds=range(batch))
    times, tokens = [], []
    for r in range(repeats):
        start = time.perf_counter()
        out = model.generate(prompts, sampler, seeds=range((r + 1) * batch, (r + 2) * batch))
        times.append(time.perf_counter() - start)
        tokens.append(generated_tokens(out))
    t = statistics.median(times)
    return {"batch": batch, "seconds": t, "samples_per_s": batch / t, "tokens_per_s": statistics.median(tokens) / t}


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
    raw = {n: {"times": {b: [] for b in batches}, "tokens": {b: [] for b in batches}, "search": [], "round": []}
           for n in names}
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
            rows.append({"batch": b, "seconds": t, "samples_per_s": b / t,
                         "tokens_per_s": statistics.median(raw[n]["tokens"][b]) / t, "repeats": raw[n]["times"][b]})
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


def _round_ms(search: dict) -> str:
    value = search.get("seconds_per_round_sample")
    return "-" if value is None else f"{value * 1e3:.2f} ms"


def round_seconds(search: dict) -> float:
    """Seconds per sample of a verify-and-stop round in the search run (one candidate of
    each of many problems per call); runs saved before it was timed: the search slice's."""
    return search.get("seconds_per_round_sample", search["seconds_per_sample"])


def affordable(budget: float, seconds_per_sample: float) -> int:
    """Samples a budget of ``budget`` seconds buys at ``seconds_per_sample`` (floor, float-safe)."""
    return math.floor(budget / seconds_per_sample + 1e-9)


def per_problem_at_k(per_problem: list[dict], k: int) -> list[float]:
    """Each problem's verified@k (0 for k = 0; k > N uses N): over its size-k subsets,
    or over its first k candidates when they are ``ordered`` (stratified first tokens)."""
    if k < 1:
        return [0.0] * len(per_problem)
    out = []
    for p in per_problem:
        m = min(k, len(p["verified"]))
        if p.get("ordered"):
            out.append(verified_at_k(p["verified"][:m], p["correct"][:m], m))
        else:
            out.append(verified_at_k(p["verified"], p["correct"], m))
    return out


def paired_se(a: list[float], b: list[float]) -> float:
    """Standard error of mean(a) - mean(b) over the same problems (paired: the problems'
    own difficulty cancels, what is left is how the two models differ problem by problem)."""
    if len(a) != len(b):
        raise ValueError(f"paired_se needs the same problems: got {len(a)} and {len(b)} values")
    if len(a) < 2:
        return 0.0
    return statistics.stdev(x - y for x, y in zip(a, b)) / math.sqrt(len(a))


def accuracy_at_budget(per_problem: list[dict], seconds_per_sample: float, budget: float) -> tuple[float, int, bool]:
    """(verified accuracy, affordable samples k, capped) at ``budget`` seconds per problem.

    k = floor(budget / seconds_per_sample); k = 0 scores 0; k > N uses N (capped).
    """
    k = affordable(budget, seconds_per_sample)
    if k < 1:
        return 0.0, 0, False
    n = len(per_problem[0]["verified"])
    return sum(per_problem_at_k(per_problem, k)) / len(per_problem), min(k, n), k > n


def budget_grid(runs: dict, samples: int, points: int = 12) -> list[float]:
    """Geometric grid from the fastest single sample to the slowest model's N samples."""
    return _geometric(min(r["seconds_per_sample"] for r in runs.values()),
                      max(r["seconds_per_sample"] for r in runs.values()) * samples, points)


def _geometric(lo: float, hi: float, points: int) -> list[float]:
    """``points`` budgets from lo to hi, evenly spaced in log (just [lo] when hi <= lo)."""
    if hi <= lo:
        return [lo]
    return [lo * (hi / lo) ** (i / (points - 1)) for i in range(points)]


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


def affordable_by_latency(latency: dict[int, float], budget: float) -> int:
    """The largest timed k whose latency fits ``budget`` seconds (0 if not even one sample)."""
    return max((k for k, t in latency.items() if t <= budget * (1 + 1e-9)), default=0)


def latency_grid(latencies: dict, points: int = 12) -> list[float]:
    """Geometric grid from the quickest single sample to the slowest model's N samples."""
    return _geometric(min(min(lat.values()) for lat in latencies.values()),
                      max(lat[max(lat)] for lat in latencies.values()), points)


def latency_points(runs: dict, latencies: dict, budgets: list[float]) -> list[dict]:
    """Per budget and model: the affordable k one problem at a time and its verified@k."""
    points = []
    for budget in budgets:
        point = {"budget_s": budget, "accuracy": {}, "k": {}, "capped": {}}
        for n, r in runs.items():
            k = affordable_by_latency({int(key): t for key, t in latencies[n].items()}, budget)
            point["k"][n], point["capped"][n] = k, False
            point["accuracy"][n] = sum(per_problem_at_k(r["per_problem"], k)) / len(r["per_problem"])
        points.append(point)
    return points


@functools.lru_cache(maxsize=None)
def none_verified(verified: int, n: int, m: int) -> float:
    """P(the first m of n samples in random order hold none of the ``verified`` ones)."""
    return math.comb(n - verified, m) / math.comb(n, m) if m <= n - verified else 0.0


def stop_rounds(per_problem: list[dict], r: int, k: int) -> float:
    """Expected rounds of r samples per problem (mean over problems) of verify-and-stop
    capped at k samples (k a multiple of r): round j + 1 runs when the first j r samples
    hold no verified one."""
    n = len(per_problem[0]["verified"])
    if per_problem[0].get("ordered"):  # candidates in drawing order: the rounds are known
        first = first_verified([p["verified"] for p in per_problem])
        return sum(min(int(f) // r + 1, k // r) for f in first) / len(per_problem)
    counts = Counter(sum(p["verified"]) for p in per_problem)
    return sum(c * sum(none_verified(v, n, j * r) for j in range(k // r)) for v, c in counts.items()) / len(per_problem)


def stop_points(runs: dict, latencies: dict, budgets: list[float]) -> list[dict]:
    """Per mean-latency budget and model: the verify-and-stop setting (rounds of r, at
    most k samples; r a timed batch, k a multiple of r up to N) with the best verified@k
    whose expected latency per problem fits (the cheaper on ties)."""
    options = {}
    for n, r in runs.items():
        lat = {int(key): t for key, t in latencies[n].items()}
        size = len(r["per_problem"][0]["verified"])
        acc = curve(r["per_problem"], size)
        options[n] = [(acc[k - 1], lat[rs] * stop_rounds(r["per_problem"], rs, k), rs, k)
                      for rs in sorted(lat) for k in range(rs, size + 1, rs)]
    points = []
    for budget in budgets:
        point = {"budget_s": budget, "accuracy": {}, "k": {}, "capped": {}, "round": {}, "mean_s": {}}
        for n, opts in options.items():
            fits = [o for o in opts if o[1] <= budget * (1 + 1e-9)]
            acc, cost, rs, k = max(fits, key=lambda o: (o[0], -o[1])) if fits else (0.0, 0.0, 0, 0)
            point["accuracy"][n], point["k"][n], point["capped"][n] = acc, k, False
            point["round"][n], point["mean_s"][n] = rs, cost
        points.append(point)
    return points


def verified_counts(per_problem: list[dict]) -> tuple[list[int], list[int]]:
    """Per problem: how many samples verified, and how many of those were correct."""
    return ([sum(p["verified"]) for p in per_problem],
            [sum(v and c for v, c in zip(p["verified"], p["correct"])) for p in per_problem])


def cascade_points(runs: dict, latencies: dict, budgets: list[float], students: list[str],
                   ars: list[str]) -> list[dict]:
    """Per mean budget and student: the best cascade of that student then an AR engine
    (``cascade_pricing``: the student in rounds of r1 until a sample verifies, at most k1;
    then, where none did, the AR engine in rounds of r2, at most k2, or nothing) whose
    expected cost per problem fits. ``latencies``: per model, seconds per round of r
    samples ({1: s/sample of a round} prices the search run). A model is never its own
    second stage (its one run would be counted twice as independent samples); a first
    stage with no other second prices verify-and-stop alone."""
    def options(name: str, zero: bool):
        per_problem = runs[name]["per_problem"]
        if per_problem[0].get("ordered"):
            return ordered_stop_options([p["verified"] for p in per_problem], [p["correct"] for p in per_problem],
                                        {int(r): t for r, t in latencies[name].items()}, zero=zero)
        verified, verified_correct = verified_counts(per_problem)
        return stop_options(verified, verified_correct, len(per_problem[0]["verified"]),
                            {int(r): t for r, t in latencies[name].items()}, zero=zero)

    seconds = {a: options(a, True) for a in ars}
    points = [{"budget_s": b, "accuracy": {}, "k": {}, "capped": {}, "mean_s": {}, "setting": {}, "per_problem": {}}
              for b in budgets]
    for s in students:
        first = options(s, False)
        best = [(None, None)] * len(budgets)
        others = [a for a in ars if a != s]
        for a in others or [None]:
            then = seconds[a] if a else nothing(first.cost.shape[1])
            for i, found in enumerate(cascade_best(first, then, budgets)):
                if found and (best[i][0] is None or (found["accuracy"], -found["mean_s"])
                              > (best[i][0]["accuracy"], -best[i][0]["mean_s"])):
                    best[i] = (found, a)
        for point, (found, a) in zip(points, best):
            if found is None:
                point["accuracy"][s], point["k"][s], point["mean_s"][s], point["setting"][s] = 0.0, 0, 0.0, None
                point["per_problem"][s] = [0.0] * len(runs[s]["per_problem"])
            else:
                point["accuracy"][s], point["mean_s"][s] = found["accuracy"], found["mean_s"]
                point["k"][s] = found["first"][1] + found["then"][1]
                point["setting"][s] = [*found["first"], a if found["then"][1] else None, *found["then"]]
                point["per_problem"][s] = found["per_problem"]
            point["capped"][s] = False
    return points


def cascade_verdicts(report: dict, cascade_key: str, stop_key: str) -> list[dict]:
    """Per budget: the best cascade (student then AR) against the best AR engine alone with
    verify-and-stop at the same mean budget (``stop_key``'s points), as ``verdicts`` words it."""
    models = report["models"]
    ars = names_with(models, "ar")
    problems = report.get("problems", 0)
    out = []
    for point, alone in zip(report[cascade_key], report[stop_key]):
        best = max(point["accuracy"], key=lambda m: point["accuracy"][m])
        ar = max(ars, key=lambda m: alone["accuracy"][m])
        se = paired_se(point["per_problem"][best], per_problem_at_k(models[ar]["search"]["per_problem"], alone["k"][ar]))
        out.append(_verdict(point["budget_s"], f"{best} -> AR", point["accuracy"][best], point["k"][best], ar,
                            alone["accuracy"][ar], alone["k"][ar], se, problems, label="the cascade"))
    return out


def family_points(cascades: list[dict]) -> list[dict]:
    """Per mean budget, the best of a family's cascades (``cascade_points`` with the
    family's models as both stages: its first stages, alone or followed by another
    member): {budget_s, model, accuracy, k, mean_s, setting, per_problem}."""
    out = []
    for point in cascades:
        best = max(point["accuracy"], key=lambda m: (point["accuracy"][m], -point["mean_s"][m]))
        out.append({"budget_s": point["budget_s"], "model": best,
                    **{key: point[key][best] for key in ("accuracy", "k", "mean_s", "setting", "per_problem")}})
    return out


def family_verdicts(students: list[dict], ars: list[dict], problems: int) -> list[dict]:
    """Per mean budget: the students' best cascade among themselves (``family_points``,
    e.g. a student at temperature 1, then the same student with a hotter head) against the
    AR engines' best among themselves, worded as ``verdicts``. No AR model is in the
    student side, so this is the target's "student + verifier" against "AR + verifier", each
    with every verify-and-stop setting and hand-off its own family offers."""
    out = []
    for s, a in zip(students, ars):
        se = paired_se(s["per_problem"], a["per_problem"])
        out.append(_verdict(s["budget_s"], _family_name(s), s["accuracy"], s["k"], _family_name(a), a["accuracy"],
                            a["k"], se, problems))
    return out


def _family_name(point: dict) -> str:
    setting = point["setting"]
    return point["model"] + (f" -> {setting[2]}" if setting and setting[2] else "")


def frontier_points(runs: dict, budgets: list[float]) -> list[dict]:
    points = []
    for budget in budgets:
        point = {"budget_s": budget, "accuracy": {}, "k": {}, "capped": {}}
        for n, r in runs.items():
            point["accuracy"][n], point["k"][n], point["capped"][n] = accuracy_at_budget(
                r["per_problem"], r["seconds_per_sample"], budget)
        points.append(point)
    return points


# ---------------------------------------------------------------------------- comparisons
def names_with(models: dict, role: str) -> list[str]:
    return [m for m, d in models.items() if d["role"] == role]


def speedups(report: dict) -> list[dict]:
    """Each student (and the AR twin) against the first teacher, side by side: samples/s
    ratio at every batch and in the search run, the latency ratio one problem at a time
    (k = 1 and 8 samples, when the latency regime ran), and the pass@1 ratio. A student
    meets its speed bar in a regime (``met_in``: "search", "k=1", "k=8") when its ratio
    there is >= (teacher steps / student steps) x 0.8 at >= 95 % of the teacher's pass@1."""
    models = report["models"]
    teachers = names_with(models, "teacher")
    if not teachers:
        return []
    teacher = models[teachers[0]]
    rows = []
    for name, d in models.items():
        if d["role"] == "teacher":
            continue
        per_batch = {t["batch"]: t["samples_per_s"] / tt["samples_per_s"]
                     for t, tt in zip(d["throughput"], teacher["throughput"])}
        keep = d["search"]["pass@1"] / teacher["search"]["pass@1"] if teacher["search"]["pass@1"] else float("nan")
        row = {"model": name, "teacher": teachers[0], "role": d["role"], "steps": d["steps"], "per_batch": per_batch,
               "search": teacher["search"]["seconds_per_sample"] / d["search"]["seconds_per_sample"], "pass@1_ratio": keep}
        latency, teacher_latency = report.get("latency", {}).get(name, {}), report.get("latency", {}).get(teachers[0], {})
        row["latency"] = {k: teacher_latency[k] / latency[k] for k in (1, 8) if k in latency and k in teacher_latency}
        if d["role"] == "student":
            row["target_speedup"] = teacher["steps"] / student_steps(d) * 0.8
            ratios = {"search": row["search"], **{f"k={k}": r for k, r in row["latency"].items()}}
            row["met_in"] = [where for where, r in ratios.items() if r >= row["target_speedup"] and keep >= 0.95]
            row["met"] = "search" in row["met_in"]
        rows.append(row)
    return rows


Z95 = 1.96  # two-sided 95 % normal quantile


def verdicts(report: dict, points: list[dict] | None = None) -> list[dict]:
    """Per budget of ``points`` (default: the throughput frontier, ``report["frontier"]``): the best student + verifier against the best AR model + verifier
    (with several AR engines, e.g. vLLM and transformers, whichever is ahead there).

    A side wins only when the difference is larger than half a problem (0.5 / problems)
    and than 1.96 paired standard errors over the problems (``paired_se`` of the two
    models' per-problem verified@k, where the search runs kept them): a smaller one is a
    tie, the problems measured cannot tell the two apart. (The error counts the
    problems and samples drawn, not the timing noise that sets k.)"""
    models = report["models"]
    ars, students = names_with(models, "ar"), names_with(models, "student")
    if not ars or not students:
        return []
    problems = report.get("problems", 0)
    out = []
    for point in report["frontier"] if points is None else points:
        best = max(students, key=lambda m: point["accuracy"][m])
        ar = max(ars, key=lambda m: point["accuracy"][m])  # the best AR engine at this budget
        runs = [models[m].get("search", {}).get("per_problem") for m in (best, ar)]
        se = (paired_se(per_problem_at_k(runs[0], point["k"][best]), per_problem_at_k(runs[1], point["k"][ar]))
              if all(runs) else 0.0)
        out.append(_verdict(point["budget_s"], best, point["accuracy"][best], point["k"][best], ar,
                            point["accuracy"][ar], point["k"][ar], se, problems))
    return out


def _verdict(budget: float, student: str, s: float, student_k: int, ar: str, a: float, ar_k: int, se: float,
             problems: int, **extra) -> dict:
    """One budget's verdict (``verdicts``): a win needs a margin beyond half a problem and
    1.96 paired standard errors ``se``; none when neither side affords a sample."""
    half_problem = 0.5 / problems if problems else 1e-12
    if student_k == 0 and ar_k == 0:
        winner = "none"  # neither affords a sample
    elif abs(s - a) < max(half_problem, Z95 * se):
        winner = "tie"
    else:
        winner = "student" if s > a else "ar"
    return {"budget_s": budget, "student": student, "ar": ar, "student_accuracy": s, "ar_accuracy": a,
            "student_k": student_k, "ar_k": ar_k, "winner": winner, "margin_problems": (s - a) * problems,
            "margin_ci95_problems": Z95 * se * problems, "problems": problems, **extra}


def _acc(x: float) -> str:
    """3 decimals, or 4 when 3 would print 1.000 for less than 1."""
    return f"{x:.4f}" if x < 1 and f"{x:.3f}" == "1.000" else f"{x:.3f}"


def verdict_text(v: dict) -> str:
    if v["winner"] == "none":
        return "neither affords a sample"
    ci = v.get("margin_ci95_problems", 0.0)
    pm = f" ± {ci:.1f}" if ci else ""
    of = f" of {v['problems']}" if v.get("problems") else ""
    if v["winner"] == "tie":
        diff = f"; {v['margin_problems']:+.1f}{pm}{of} problems" if pm else ""
        return f"tie ({v['student']} {_acc(v['student_accuracy'])}, {v['ar']} {_acc(v['ar_accuracy'])}{diff})"
    s, a = _acc(v["student_accuracy"]), _acc(v["ar_accuracy"])
    label = v.get("label", "the student")
    if v["winner"] == "ar":
        note = f" ({label} affords no sample)" if v["student_k"] == 0 else ""
        return f"**AR wins** by {-v['margin_problems']:.1f}{pm}{of} problems: {v['ar']} {a} > {v['student']} {s}{note}"
    note = " (the AR twin affords no sample)" if v["ar_k"] == 0 else ""
    return (f"{label.removeprefix('the ')} wins by {v['margin_problems']:.1f}{pm}{of} problems: {v['student']} {s} > "
            f"{v['ar']} {a}{note}")


def curve(per_problem: list[dict], n: int) -> list[float]:
    """verified@k for k = 1..n, averaged over the problems."""
    return [sum(per_problem_at_k(per_problem, k)) / len(per_problem) for k in range(1, n + 1)]


def break_even(student: list[float], ar: list[float], ks: list[int]) -> dict[int, float | None]:
    """For each AR sample count k: the smallest k' with student verified@k' >= AR
    verified@k, as the ratio k' / k (how many times the AR model's samples per second
    the student must draw to match it at that budget; < 1: it is ahead even when slower),
    or None when no k' <= N reaches it. Curves are verified@1..N; this depends only on the
    accuracy runs, not on the machine."""
    out = {}
    for k in ks:
        if k > len(ar):
            continue
        need = next((kp for kp, acc in enumerate(student, start=1) if acc >= ar[k - 1] - 1e-12), None)
        out[k] = None if need is None else need / k
    return out


def break_even_table(report: dict) -> list[dict]:
    """Per student, against each AR model: ``break_even`` at k = 1, 2, 4, ... <= N."""
    models = report["models"]
    runs = {m: d.get("search", {}).get("per_problem") for m, d in models.items()}
    curves = {m: curve(r, len(r[0]["verified"])) for m, r in runs.items() if r}  # verified@1..N, each model's own N
    rows = []
    for ar in names_with(models, "ar"):
        if ar not in curves:
            continue
        n = len(curves[ar])
        ks = [2 ** i for i in range(n.bit_length()) if 2 ** i <= n]
        for s in names_with(models, "student"):
            if s in curves:
                rows.append({"student": s, "ar": ar, "ks": ks, "ar_accuracy": [curves[ar][k - 1] for k in ks],
                             "ratio": break_even(curves[s], curves[ar], ks)})
    return rows


def unequal_lengths(report: dict) -> str | None:
    """A warning when the diffusion models of a run decode different answer lengths.

    A diffusion sampler fills every one of its gen_length columns (it does not stop at
    EOS like an AR decoder), so a model with more columns does more work for the same
    answers and every speed ratio against it is inflated (seen: an AR twin read as a
    denoiser decoding its 21 columns against students decoding 12)."""
    lengths = {n: d["gen_length"] for n, d in report["models"].items() if d.get("kind") != "ar" and d.get("gen_length")}
    if len(set(lengths.values())) <= 1:
        return None
    shortest = min(lengths.values())
    listed = ", ".join(f"{n}: {g}" for n, g in lengths.items())
    return (f"the diffusion models decode different answer lengths ({listed} columns): speed ratios between them "
            f"compare unequal work; give the longer ones `gen_length={shortest}` in their spec")


def targets(report: dict) -> list[str]:
    """The search targets, checked on this run's numbers."""
    lines = []
    warning = unequal_lengths(report)
    if warning:
        lines.append(f"- **Warning**: {warning}")
    for row in report["speedups"]:
        if row["role"] != "student":
            continue
        one = "".join(f", {r:.2f}x one problem at a time with k = {k}" for k, r in row.get("latency", {}).items())
        met_in = row.get("met_in", ["search"] if row["met"] else [])
        verdict = ("NOT met" if not met_in else "met" if len(met_in) == 1 + len(row.get("latency", {}))
                   else "met at " + ", ".join(met_in) + " only")
        lines.append(f"- {row['model']} vs {row['teacher']}: {row['search']:.2f}x faster in search{one} "
                     f"(target >= {row['target_speedup']:.1f}x), pass@1 ratio {row['pass@1_ratio']:.3f} "
                     f"(target >= 0.95): {verdict}")
    if report["verdicts"]:
        lines.append(_budget_line(report["verdicts"], "equal wall-clock budget"))
    if report.get("batch_stop_verdicts"):
        lines.append(_budget_line(report["batch_stop_verdicts"], "equal mean cost, verify-and-stop in the search run"))
    if report.get("latency_verdicts"):
        lines.append(_budget_line(report["latency_verdicts"], "equal latency, one problem at a time"))
    if report.get("stop_verdicts"):
        lines.append(_budget_line(report["stop_verdicts"], "equal mean latency, verify-and-stop one problem at a time"))
    for key, regime in (("batch_family_verdicts", "in the search run"), ("family_verdicts", "one problem at a time")):
        if report.get(key):
            lines.append(_budget_line(report[key], f"equal mean cost, each family's best verify-and-stop cascade {regime}",
                                      "best SDTT-student cascade + verifier"))
    return lines


def _budget_line(vs: list[dict], regime: str, side: str = "best SDTT student + verifier", who: str = "the student",
                 words: tuple[str, str] = ("met (AR solves more at none)", "NOT met")) -> str:
    """One target line: at how many budgets of a regime the student (``side``, ``who``)
    solves more, and where AR does. Met (``words``) when AR solves more nowhere and the
    student somewhere AR affords a sample too (ties are left where the two cannot be told
    apart, e.g. both at 1.000 once the budget buys enough samples; a win below one AR sample
    alone meets nothing)."""
    ar = " / ".join(dict.fromkeys(v["ar"] for v in vs))  # every AR engine that led somewhere
    scored = [v for v in vs if v["winner"] != "none"]
    wins = [v for v in scored if v["winner"] == "student"]
    ar_wins = [v for v in scored if v["winner"] == "ar"]
    ties = [v for v in scored if v["winner"] == "tie"]
    below = sum(v["ar_k"] == 0 for v in wins)
    met = len(wins) > below and not ar_wins
    line = (f"- {regime}, {side} vs {ar} + verifier: {who} solves more "
            f"at {len(wins)} of {len(scored)} budgets" + (f" ({below} below one AR sample)" if below else "")
            + f": {words[0] if met else words[1]}")
    if wins:
        line += f". {who.capitalize()} solves more at " + ", ".join(f"{v['budget_s']:.3g}s" for v in wins)
    if ar_wins:
        line += (f". The AR baseline solves more at {len(ar_wins)} budgets: "
                 + ", ".join(f"{v['budget_s']:.3g}s" for v in ar_wins))
    if ties:
        line += "; ties at " + ", ".join(f"{v['budget_s']:.3g}s" for v in ties)
    return line


# ---------------------------------------------------------------------------- report
def _steps(d: dict) -> str:
    """The step budget, and the calls a generate made where fewer (a budget that never binds)."""
    calls = d.get("calls_per_generate")
    return f"{d['steps']} ({calls} calls)" if calls and calls < d["steps"] else f"{d['steps']}"


def _share(d: dict) -> str:
    return "n/a" if d["forward_share"] is None else f"{d['forward_share']:.2f}"


def markdown(report: dict) -> str:
    models = report["models"]
    names = list(models)
    batches = report["batches"]
    out = [f"## Frontier: {report['task']} ({report['when']})", "",
           f"Machine: {report['machine']}. Command: `{report['command']}`", "",
           (f"{report['problems']} test problems x {report['samples']} samples per model (pass@1, verified@N), search "
            f"batch {report['search_batch']}. Timings side by side: {report['repeats']} rounds after a warm-up round, "
            "each running every model in turn, medians; s/sample = a search slice's wall time (generate + verify; "
            f"{report.get('search_calls', 2)} calls) / its samples; a round's s/sample: the same for one candidate of "
            "each of as many problems (what a verify-and-stop round of one sample per problem costs; no shared "
            "prompts)."), "",
           "| model | kind | steps | params | backend | pass@1 (± se) | verified@N | s/sample in search | a round's s/sample "
           "| forward share | GFLOPs/token |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        d = models[n]
        out.append(f"| {n} | {d['kind']} | {_steps(d)} | {d['parameters'] / 1e6:.2f}M | {d['backend']} | "
                   f"{d['search']['pass@1']:.3f} ± {d['search']['pass@1_se']:.3f} | {d['search']['verified@N']:.3f} | "
                   f"{d['search']['seconds_per_sample'] * 1e3:.2f} ms | {_round_ms(d['search'])} | {_share(d)} | "
                   f"{d['flops_per_token'] / 1e9:.4f}"
                   f"{'' if d['flops_source'] == 'counted' else ' (' + d['flops_source'] + ')'} |")
    out += ["", "Throughput, samples/s \\| generated tokens/s (median of repeats after a warm-up):", "",
            "| model | " + " | ".join(f"batch {b}" for b in batches) + " |", "|---|" + "---|" * len(batches)]
    for n in names:
        cells = [f"{t['samples_per_s']:.1f} \\| {t['tokens_per_s']:.0f}" for t in models[n]["throughput"]]
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    if report["speedups"]:
        lat_ks = list(report["speedups"][0].get("latency", {}))
        out += ["", (f"Speed-up over {report['speedups'][0]['teacher']} (samples/s ratio, measured side by side"
                     + ("; 1 problem: its latency ratio one problem at a time" if lat_ks else "") + "):"), "",
                "| model | steps | " + " | ".join(f"batch {b}" for b in batches) + " | search | "
                + "".join(f"1 problem, k={k} | " for k in lat_ks) + "target | pass@1 ratio |",
                "|---|---|" + "---|" * (len(batches) + len(lat_ks) + 3)]
        for row in report["speedups"]:
            target = f">= {row['target_speedup']:.1f}x" if "target_speedup" in row else "-"
            lat = "".join(f"{row['latency'][k]:.2f}x | " if k in row.get("latency", {}) else "- | " for k in lat_ks)
            out.append(f"| {row['model']} | {row['steps']} | " + " | ".join(f"{row['per_batch'][b]:.2f}x" for b in batches)
                       + f" | {row['search']:.2f}x | {lat}{target} | {row['pass@1_ratio']:.3f} |")
    out += _budget_table(
        names, report["frontier"], report["verdicts"], "budget (s/problem)",
        (f"Verified accuracy at equal wall-clock budgets per problem (k = samples affordable; N = "
         f"{report['samples']} measured; `*` = capped at N; student vs AR: the best SDTT student + verifier "
         "against the best AR engine + verifier, margins in problems ± 1.96 paired standard errors over the problems; "
         "a tie when within that or half a problem):"),
        lambda p, n: f"{_acc(p['accuracy'][n])} (k={p['k'][n]}){'*' if p['capped'][n] else ''}")
    if report.get("batch_stop_frontier"):
        out += _stop_markdown(report, "batch_stop_frontier", "batch_stop_verdicts", (
            "Verify-and-stop in the search run (rounds of one sample per open problem, packed into the search "
            "batch, until one verifies, at most k; mean cost per problem = a round's s/sample x the expected samples "
            "from the verified counts; rounds of 1 draw the fewest samples when every sample costs the same):"))
        out += _cascade_markdown(report, "batch_cascade_frontier", "batch_cascade_verdicts", "batch_stop_frontier",
                                 "in the search run")
        out += _family_markdown(report, "batch_family", "in the search run")
    if report.get("latency"):
        out += _latency_markdown(report)
    if report.get("break_even"):
        ks = report["break_even"][0]["ks"]
        out += ["", ("Samples/s over the AR model that a student needs to match AR + verifier drawing k samples "
                     "(k' / k for the smallest k' with student verified@k' >= AR verified@k; from the accuracy runs "
                     "alone, so it holds on any machine: compare it with the measured speed ratios; `never` = not "
                     "within N):"), "",
                "| student | AR | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
        for row in report["break_even"]:
            cells = ["never" if row["ratio"].get(k) is None else f"{row['ratio'][k]:.2g}x" for k in ks]
            out.append(f"| {row['student']} | {row['ar']} | " + " | ".join(cells) + " |")
    out += ["", "Targets:", "", *report["targets"], ""]
    return "\n".join(out)


def _latency_markdown(report: dict) -> list[str]:
    """The latency regime's two tables: seconds for k samples of one problem, and verified
    accuracy within a latency budget."""
    names, ks = list(report["models"]), report["latency_ks"]
    out = ["", (f"Latency regime, one problem at a time (its k samples in one generate call, then verified; median "
                f"of {report['latency_problems']} problems x {report['repeats']} rounds after a warm-up round), ms:"),
           "", "| model | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for n in names:
        out.append(f"| {n} | " + " | ".join(f"{report['latency'][n][k] * 1e3:.1f}" for k in ks) + " |")
    out += _budget_table(
        names, report["latency_frontier"], report.get("latency_verdicts"), "latency budget (s)",
        ("Verified accuracy within a latency budget per problem (k = the most samples whose measured latency "
         "fits; accuracy = verified@k from the accuracy runs; student vs AR as above):"),
        lambda p, n: f"{_acc(p['accuracy'][n])} (k={p['k'][n]})")
    if report.get("stop_frontier"):
        out += _stop_markdown(report, "stop_frontier", "stop_verdicts", (
            "Verify-and-stop one problem at a time (rounds of r samples until one verifies, at most k; mean latency "
            "per problem = the timed latency of r samples x the expected rounds from the accuracy runs' verified "
            "counts; accuracy = verified@k; each model's best (r, k) within a mean budget; student vs AR as above):"))
        out += _cascade_markdown(report, "cascade_frontier", "cascade_verdicts", "stop_frontier",
                                 "one problem at a time")
        out += _family_markdown(report, "family", "one problem at a time")
    return out


def _stop_markdown(report: dict, key: str, verdict_key: str, caption: str) -> list[str]:
    """A verify-and-stop table: per mean budget, each model's best (r, k), its accuracy and mean cost."""
    return _budget_table(
        list(report["models"]), report[key], report.get(verdict_key), "mean budget (s/problem)", caption,
        lambda p, n: (f"{_acc(p['accuracy'][n])} (r={p['round'][n]}, k={p['k'][n]}, {p['mean_s'][n] * 1e3:.2g} ms)"
                      if p["k"][n] else "0.000 (-)"))


def _cascade_markdown(report: dict, key: str, verdict_key: str, stop_key: str, regime: str) -> list[str]:
    """A cascade table: per mean budget, each student's best cascade into an AR engine
    (``cascade_points``) beside each AR engine alone with verify-and-stop, then one line
    saying where the cascade solves more (not one of the search targets: the AR model is part
    of the cascade)."""
    if not report.get(key):
        return []
    students = list(report[key][0]["accuracy"])
    ars = names_with(report["models"], "ar")
    column = {f"{s} -> AR": s for s in students} | {f"{a} alone": a for a in ars}
    points = [{**p, "alone": alone} for p, alone in zip(report[key], report[stop_key])]

    def cell(p: dict, name: str) -> str:
        model = column[name]
        if model in ars:
            alone = p["alone"]
            return (f"{_acc(alone['accuracy'][model])} (r={alone['round'][model]}, k={alone['k'][model]}, "
                    f"{alone['mean_s'][model] * 1e3:.2g} ms)" if alone["k"][model] else "0.000 (-)")
        setting = p["setting"][model]
        if setting is None:
            return "0.000 (-)"
        r1, k1, ar, r2, k2 = setting
        then = f"; {ar} r={r2}, k={k2}" if ar else ""
        return f"{_acc(p['accuracy'][model])} (r={r1}, k={k1}{then}; {p['mean_s'][model] * 1e3:.2g} ms)"

    caption = (f"Cascade, {regime}: each student in rounds of r until a sample verifies (at most k), then, only where "
               "none did, an AR engine in rounds of its own (`sdtt_search.Cascade`, CLI `fallback.model=`); mean cost "
               "per problem and accuracy exact from both accuracy runs (`benchmarks/cascade_pricing.py`), beside each AR "
               "engine alone with verify-and-stop; cascade vs AR as above:")
    out = _budget_table(list(column), points, report.get(verdict_key), "mean budget (s/problem)", caption, cell,
                        "cascade vs AR alone")
    line = _budget_line(report[verdict_key], f"Cascade, {regime} (not one of the search targets: the AR twin is part "
                        "of it)", "best cascade + verifier", "the cascade",
                        ("never behind, and ahead where AR affords a sample too",
                         "not ahead where AR affords a sample, or behind somewhere"))
    return out + ["", line]


def _family_markdown(report: dict, key: str, regime: str) -> list[str]:
    """Each family's best cascade among its own models per mean budget (``family_points``),
    students against AR (one of the search targets: no AR model is on the student side)."""
    if not report.get(key + "_frontier"):
        return []
    sides = report[key + "_frontier"]
    points = [{"budget_s": s["budget_s"], "student": s, "ar": a} for s, a in zip(sides["student"], sides["ar"])]

    columns = {"SDTT students, best cascade": "student", "AR engines, best cascade": "ar"}

    def cell(p: dict, column: str) -> str:
        q = p[columns[column]]
        if q["setting"] is None:
            return "0.000 (-)"
        r1, k1, then, r2, k2 = q["setting"]
        rest = f"; then {then} r={r2}, k={k2}" if then else ""
        return f"{_acc(q['accuracy'])} ({q['model']} r={r1}, k={k1}{rest}; {q['mean_s'] * 1e3:.2g} ms)"

    caption = (f"Each family's best cascade among its own models, {regime}: a model in rounds of r until a sample "
               "verifies (at most k), then, where none did, another model of the same family (e.g. the same student "
               "with a hotter head, `sampler.head_tokens` / `head_temperature`) or nothing; priced exactly from the "
               "accuracy runs (`benchmarks/cascade_pricing.py`); students vs AR as above:")
    return _budget_table(list(columns), points, report.get(key + "_verdicts"), "mean budget (s/problem)", caption,
                         cell, "students vs AR")


def _budget_table(names: list[str], points: list[dict], verdicts_: list[dict] | None, budget_label: str,
                  caption: str, cell, verdict_label: str = "student vs AR") -> list[str]:
    """One budget table: a row per point, ``cell(point, model)`` per model, the verdict last."""
    out = ["", caption, "", f"| {budget_label} | " + " | ".join(names) + " |" + (f" {verdict_label} |" if verdicts_ else ""),
           "|---|" + "---|" * (len(names) + bool(verdicts_))]
    for i, point in enumerate(points):
        verdict = f" {verdict_text(verdicts_[i])} |" if verdicts_ else ""
        out.append(f"| {point['budget_s']:.3g} | " + " | ".join(cell(point, n) for n in names) + " |" + verdict)
    return out


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("frontier", "wall-clock budget per problem (s), search batch "
               f"{report['search_batch']}; x = capped at N samples")]
    if report.get("batch_stop_frontier"):
        panels.append(("batch_stop_frontier", "mean cost per problem (s), verify-and-stop in the search run"))
    if report.get("latency_frontier"):
        panels.append(("latency_frontier", "latency budget (s), one problem at a time"))
    if report.get("stop_frontier"):
        panels.append(("stop_frontier", "mean latency budget (s), verify-and-stop, one problem at a time"))
    cols = min(len(panels), 2)  # two panels a row: the many-problem regimes above, one problem at a time below
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.5 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (key, xlabel) in zip(axes.flat, panels):
        for name in report["models"]:
            pts = [p for p in report[key] if p["k"][name] > 0]
            style = "--" if report["models"][name]["role"] == "ar" else "-"
            line, = ax.plot([p["budget_s"] for p in pts], [p["accuracy"][name] for p in pts], style, marker="o",
                            markersize=3, label=name)
            capped = [p for p in pts if p["capped"][name]]
            ax.plot([p["budget_s"] for p in capped], [p["accuracy"][name] for p in capped], "x",
                    color=line.get_color(), markersize=6)
        cascades = report.get({"batch_stop_frontier": "batch_cascade_frontier", "stop_frontier": "cascade_frontier"}
                              .get(key, ""))
        if cascades:  # the verify-and-stop panels: the best cascade (student, then AR) at each mean budget
            pts = [(p["budget_s"], max(p["accuracy"].values())) for p in cascades if max(p["k"].values()) > 0]
            ax.plot([b for b, _ in pts], [a for _, a in pts], ":", color="black", marker="s", markersize=3,
                    label="best cascade: student, then AR")
        families = report.get({"batch_stop_frontier": "batch_family_frontier", "stop_frontier": "family_frontier"}
                              .get(key, ""))
        for side, style, label in (("student", "-.", "students' best cascade"), ("ar", (0, (1, 3)), "AR's best cascade")):
            pts = [(p["budget_s"], p["accuracy"]) for p in (families or {}).get(side, []) if p["k"] > 0]
            if pts:
                ax.plot([b for b, _ in pts], [a for _, a in pts], linestyle=style, color="grey", marker="^",
                        markersize=3, label=label)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("verified accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['task']}: accuracy per second ({report['machine'][:70]})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def slim(report: dict) -> dict:
    """The report for frontier.json: per-problem (verified, correct) lists become counts
    (n, v, c_v per problem are all verified@k needs)."""
    out = json.loads(json.dumps(report))
    for key in ("batch_cascade_frontier", "cascade_frontier"):  # per-problem accuracies: recomputed on --render
        for point in out.get(key, []):
            point.pop("per_problem", None)
    for key in ("batch_family_frontier", "family_frontier"):
        for side in out.get(key, {}).values():
            for point in side:
                point.pop("per_problem", None)
    for d in out["models"].values():
        per_problem = d["search"].pop("per_problem")
        d["search"]["verified_counts"], d["search"]["verified_correct_counts"] = verified_counts(per_problem)
        d["search"]["correct_counts"] = [sum(p["correct"]) for p in per_problem]
        if per_problem and per_problem[0].get("ordered"):  # the order matters: keep it, as 0/1 strings
            d["search"]["ordered_verified"] = ["".join("01"[v] for v in p["verified"]) for p in per_problem]
            d["search"]["ordered_correct"] = ["".join("01"[c] for c in p["correct"]) for p in per_problem]
    return out


def unslim(saved: dict) -> dict:
    """Inverse of ``slim`` for every number the tables use: per-problem (verified, correct)
    lists rebuilt from the counts (verified@k and pass@1 depend on the counts only, not on
    which samples they were), the latency table's keys back to ints."""
    report = json.loads(json.dumps(saved))
    n = report["samples"]
    for d in report["models"].values():
        s = d["search"]
        counts = zip(s.pop("verified_counts"), s.pop("verified_correct_counts"), s.pop("correct_counts"))
        s["per_problem"] = [{"verified": [True] * v + [False] * (n - v),
                             "correct": [True] * vc + [False] * (v - vc) + [True] * (c - vc) + [False] * (n - v - c + vc)}
                            for v, vc, c in counts]
        if "ordered_verified" in s:  # stratified candidates: their drawing order
            s["per_problem"] = [{"verified": [b == "1" for b in v], "correct": [b == "1" for b in c], "ordered": True}
                                for v, c in zip(s.pop("ordered_verified"), s.pop("ordered_correct"))]
    if "latency" in report:
        report["latency"] = {m: {int(k): t for k, t in lat.items()} for m, lat in report["latency"].items()}
    return report


def analyse(report: dict, budgets: int) -> dict:
    """Everything computed from the measurements: both frontiers, speed-ups, verdicts,
    break-even table and targets (so a saved run re-renders with ``--render``)."""
    runs = {n: d["search"] for n, d in report["models"].items()}
    grid = budget_grid(runs, report["samples"], budgets)
    per_sample = {n: {1: round_seconds(r)} for n, r in runs.items()}  # a round of one sample per open problem
    students, ars = names_with(report["models"], "student"), names_with(report["models"], "ar")
    report["frontier"] = frontier_points(runs, grid)
    report["batch_stop_frontier"] = stop_points(runs, per_sample, grid)
    families = students and ars and (len(students) > 1 or len(ars) > 1)  # else the same as verify-and-stop alone
    if students and ars:
        report["batch_cascade_frontier"] = cascade_points(runs, per_sample, grid, students, ars)
        report["batch_cascade_verdicts"] = cascade_verdicts(report, "batch_cascade_frontier", "batch_stop_frontier")
    if families:
        _families(report, "batch_family", runs, per_sample, grid, students, ars)
    if report.get("latency"):
        grid = latency_grid(report["latency"], budgets)
        report["latency_frontier"] = latency_points(runs, report["latency"], grid)
        report["stop_frontier"] = stop_points(runs, report["latency"], grid)
        if students and ars:
            report["cascade_frontier"] = cascade_points(runs, report["latency"], grid, students, ars)
            report["cascade_verdicts"] = cascade_verdicts(report, "cascade_frontier", "stop_frontier")
        if families:
            _families(report, "family", runs, report["latency"], grid, students, ars)
    report["speedups"] = speedups(report)
    report["verdicts"] = verdicts(report)
    report["batch_stop_verdicts"] = verdicts(report, report["batch_stop_frontier"])
    if report.get("latency"):
        report["latency_verdicts"] = verdicts(report, report["latency_frontier"])
        report["stop_verdicts"] = verdicts(report, report["stop_frontier"])
    report["break_even"] = break_even_table(report)
    report["targets"] = targets(report)
    return report


def _families(report: dict, key: str, runs: dict, latencies: dict, grid: list[float], students: list[str],
              ars: list[str]) -> None:
    """``report[key + "_frontier"]``: each family's best cascade among its own models per
    mean budget; ``report[key + "_verdicts"]``: students against AR there."""
    report[key + "_frontier"] = {side: family_points(cascade_points(runs, latencies, grid, names, names))
                                 for side, names in (("student", students), ("ar", ars))}
    report[key + "_verdicts"] = family_verdicts(report[key + "_frontier"]["student"], report[key + "_frontier"]["ar"],
                                                report.get("problems", 0))


def write_report(text: str, report: dict, out_dir: Path) -> None:
    """``<out>/frontier.md``: this run's tables, its plot and its wall time."""
    (out_dir / "frontier.md").write_text(text + f"\n\nPlot: `frontier.png`; wall time of the run "
                                         f"{report['wall_seconds'] / 60:.1f} min.\n")


def render(path: Path) -> dict:
    """Re-render a saved run's tables (frontier.md and the plot, beside the json) with this
    version of the analysis; nothing is measured again."""
    report = analyse(unslim(json.loads(path.read_text())), len(json.loads(path.read_text())["frontier"]))
    text = markdown(report)
    print(text)
    plot(report, path.with_name("frontier.png"))
    write_report(text, report, path.parent)
    return report


# ---------------------------------------------------------------------------- main
def measure(model, spec: str, args: argparse.Namespace, task, problems, search: dict | None = None) -> dict:
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


def saved_accuracy(paths: list[Path] | None, args: argparse.Namespace) -> dict:
    """Per model spec, the accuracy block of saved frontier.json files (``--accuracy-from``;
    a spec in several: the last file's): the search runs are seeded, so the same spec on
    the same problems gives the same candidates; only the timings need this machine."""
    out: dict = {}
    for path in paths or []:
        if not path.exists():
            raise SystemExit(f"--accuracy-from {path}: no such file; pass a frontier.json written by this script")
        saved = unslim(json.loads(path.read_text()))
        mine = (args.problems, args.samples, args.split)
        theirs = (saved["problems"], saved["samples"], saved.get("split", "test"))
        if mine != theirs:
            raise SystemExit(f"--accuracy-from {path} measured (problems, samples, split) = {theirs}, this run asks "
                             f"{mine}; use the same --problems / --samples / --split")
        out.update({name: d["search"] for name, d in saved["models"].items()})
    return out


def reused_search(reused: dict, spec: str) -> dict | None:
    """The saved accuracy run of ``spec``, or of the same spec without ``window=``: a
    window changes which columns a call runs, never a token (``SamplerConfig.window``,
    tested), so a windowed student is timed on its unwindowed twin's candidates. A copy:
    each model's timings are written into its own."""
    name, _, overrides = spec.partition(":")
    kept = ",".join(item for item in overrides.split(",") if item and not item.startswith("window="))
    return copy.deepcopy(reused.get(spec) or reused.get(f"{name}:{kept}" if kept else name))


def run(args: argparse.Namespace) -> dict:
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"task": args.task, "machine": describe(), "when": time.strftime("%Y-%m-%d"), "problems": args.problems,
              "samples": args.samples, "batches": args.batches, "search_batch": args.search_batch,
              "search_calls": args.search_calls,
              "repeats": args.repeats, "command": "python benchmarks/frontier.py " + " ".join(args.argv), "models": {},
              "split": args.split}
    started = time.perf_counter()
    reused = saved_accuracy(args.accuracy_from, args)
    models, task, task_meta = {}, None, None
    for name in args.models:
        model = load_spec(name, args.device, args.ar_backend)
        if task is None:
            task_meta = model.meta["task"]
            task = task_from_config(task_meta)
        elif not same_task(model.meta.get("task"), task_meta):
            raise SystemExit(f"{name} is a {model.meta.get('task')} model, the first model is {task_meta}: "
                             "compare models of one task")
        models[name] = model
    problems = task.problems(args.split, limit=args.problems)
    for name, model in models.items():
        start = time.perf_counter()
        saved = reused_search(reused, name)
        fingerprint = model_fingerprint(name.partition(":")[0])
        if saved is not None and saved.get("fingerprint") not in (None, fingerprint):
            raise SystemExit(f"--accuracy-from: the saved accuracy run of {name} is of other weights (fingerprint "
                             f"{saved['fingerprint']}, this model's {fingerprint}); run without --accuracy-from")
        info = measure(model, name, args, task, problems, saved)
        info["search"]["fingerprint"] = fingerprint
        report["models"][name] = info
        s = info["search"]
        print(f"{name}: pass@1 {s['pass@1']:.3f}, verified@{args.samples} {s['verified@N']:.3f} "
              f"({'from ' + ' / '.join(map(str, args.accuracy_from)) if saved else f'{time.perf_counter() - start:.0f} s'})",
              flush=True)
    print("timing side by side ...", flush=True)
    timing = interleaved_timing(models, task, problems, args.batches, args.repeats, args.samples, args.search_batch,
                                args.search_calls)
    for name, t in timing.items():
        report["models"][name]["throughput"] = t["throughput"]
        report["models"][name]["search"]["seconds_per_sample"] = t["seconds_per_sample"]
        report["models"][name]["search"]["seconds_per_sample_repeats"] = t["seconds_per_sample_repeats"]
        report["models"][name]["search"]["seconds_per_round_sample"] = t["seconds_per_round_sample"]
        report["models"][name]["search"]["seconds_per_round_sample_repeats"] = t["seconds_per_round_sample_repeats"]
    if args.latency_problems > 0:
        print("latency, one problem at a time ...", flush=True)
        report["latency_ks"] = latency_ks(args.samples)
        report["latency_problems"] = args.latency_problems
        report["latency"] = latency_timing(models, task, problems, report["latency_ks"], args.repeats,
                                           args.latency_problems)
    analyse(report, args.budgets)
    report["wall_seconds"] = time.perf_counter() - started
    text = markdown(report)
    print(text)
    (out_dir / "frontier.json").write_text(json.dumps(slim(report), indent=1))
    plot(report, out_dir / "frontier.png")
    write_report(text, report, out_dir)
    return report


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--render", type=Path, help="re-render the tables of a saved frontier.json (measures nothing)")
    p.add_argument("--task", help="a label for the report (the task is read from the first model)")
    p.add_argument("--models", nargs="+",
                   help="zoo names or checkpoint directories of one task; name:key=value,... overrides the sampler")
    p.add_argument("--problems", type=int, default=100)
    p.add_argument("--samples", type=int, default=64, help="N per problem in the search run")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--search-batch", type=int, default=64, help="rows per generate call in the search run")
    p.add_argument("--search-calls", type=int, default=8,
                   help="generate calls of --search-batch rows per model in each timing round's search slice (more: "
                        "steadier s/sample on a shared machine)")
    p.add_argument("--share-batch", type=int, default=64, help="batch of the forward-share measurement")
    p.add_argument("--flops-batch", type=int, default=8, help="batch of the FLOP count")
    p.add_argument("--budgets", type=int, default=12, help="points of the budget grids")
    p.add_argument("--latency-problems", type=int, default=5,
                   help="problems per round in the latency regime (one problem's k samples per call); 0 skips it")
    p.add_argument("--split", default="test")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ar-backend", default="auto", choices=["auto", "vllm", "transformers"])
    p.add_argument("--out", default="benchmarks/frontier")
    p.add_argument("--accuracy-from", type=Path, nargs="+", default=None,
                   help="reuse the accuracy runs of saved frontier.json files for the models they hold (same "
                        "problems, samples and split; seeded, so the same candidates; a model in several: the last "
                        "file's) and measure only the timings")
    args = p.parse_args(argv)
    if args.render is None and (not args.task or not args.models):
        p.error("--task and --models are required (or --render a saved frontier.json)")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


if __name__ == "__main__":
    _args = parse()
    if _args.render is not None:
        render(_args.render)
    else:
        run(_args)
