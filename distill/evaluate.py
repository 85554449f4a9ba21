"""Task accuracy of a model while it trains or after a distillation round."""
from __future__ import annotations

import math
import time
from collections import Counter
from typing import Sequence

import torch

from sdtt_search.diffusion import SamplerConfig, generate


def unigram_entropy(rows: Sequence[Sequence[int]]) -> float:
    """Mean over samples of the Shannon entropy (nats) of each sample's token ids.

    The PGM/DUO definition; a falling value flags mode collapse.
    """
    values = []
    for row in rows:
        if not row:
            continue
        counts = Counter(row)
        n = len(row)
        values.append(-sum(c / n * math.log(c / n) for c in counts.values()))
    return sum(values) / len(values) if values else 0.0


def _until_eos(ids: list[int], eos_id: int, pad_id: int) -> list[int]:
    out = []
    for i in ids:
        if i == eos_id:
            break
        if i != pad_id:
            out.append(i)
    return out


@torch.no_grad()
def evaluate_task(
    model,
    tokenizer,
    task,
    problems: Sequence,
    sampler: SamplerConfig,
    *,
    gen_length: int,
    seed: int = 0,
    batch_size: int = 256,
    format_prompt=None,
) -> dict:
    """pass@1 (task ``is_correct``) of one sample per problem, plus speed and entropy.

    ``format_prompt`` maps a task prompt to the model's input text (e.g. an instruct
    model's chat template); default: the task prompt as is.

    Returns:
        {"pass@1", "samples_per_s", "entropy", "nfe_per_batch", "problems", "steps",
        "temperature"}.
    """
    was_training = model.training
    model.eval()
    correct, token_rows, nfe, batches = 0, [], 0, 0
    start = time.perf_counter()
    for lo in range(0, len(problems), batch_size):
        chunk = problems[lo : lo + batch_size]
        out = generate(
            model, tokenizer, [(format_prompt or str)(task.format_prompt(p)) for p in chunk], sampler,
            seeds=[seed * 1_000_003 + lo + i for i in range(len(chunk))], gen_length=gen_length,
        )
        correct += sum(bool(task.is_correct(p, text)) for p, text in zip(chunk, out.texts))
        token_rows += [_until_eos(row.tolist(), tokenizer.eos_id, tokenizer.pad_id) for row in out.tokens]
        nfe += out.nfe
        batches += 1
    elapsed = time.perf_counter() - start
    model.train(was_training)
    n = max(len(problems), 1)
    return {
        "pass@1": correct / n,
        "samples_per_s": len(problems) / max(elapsed, 1e-9),
        "entropy": unigram_entropy(token_rows),
        "nfe_per_batch": nfe / max(batches, 1),
        "problems": len(problems),
        "steps": sampler.steps,
        "temperature": sampler.temperature,
    }


@torch.no_grad()
def evaluate_ar_task(
    model,
    tokenizer,
    task,
    problems: Sequence,
    *,
    gen_length: int,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
) -> dict:
    """pass@1 of one sample per problem for an in-memory AR twin (``CausalLM``),
    decoded with ``transformers`` generate and a KV cache.

    Returns:
        {"pass@1", "samples_per_s", "entropy", "problems"}.
    """
    from sdtt_search.ar.backends import TransformersBackend

    engine = TransformersBackend.from_module(model, pad_id=tokenizer.pad_id, eos_id=tokenizer.eos_id)
    correct, token_rows = 0, []
    start = time.perf_counter()
    for lo in range(0, len(problems), batch_size):
        chunk = problems[lo : lo + batch_size]
        samples = engine.generate([tokenizer.encode(task.format_prompt(p)) for p in chunk],
                                  seeds=[seed * 1_000_003 + lo + i for i in range(len(chunk))],
                                  max_tokens=gen_length, temperature=temperature, top_p=1.0)
        correct += sum(bool(task.is_correct(p, tokenizer.decode(s.token_ids))) for p, s in zip(chunk, samples))
        token_rows += [_until_eos(s.token_ids, tokenizer.eos_id, tokenizer.pad_id) for s in samples]
    elapsed = time.perf_counter() - start
    n = max(len(problems), 1)
    return {
        "pass@1": correct / n,
        "samples_per_s": len(problems) / max(elapsed, 1e-9),
        "entropy": unigram_entropy(token_rows),
        "problems": len(problems),
    }
