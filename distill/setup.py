"""Pieces both training programs build from a Hydra config: task, tokenizer,
device, evaluation split and the data stream."""
from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sdtt_search.cli import task_from_config
from sdtt_search.machine import resolve_device  # noqa: F401 - re-exported for the programs
from sdtt_search.tokenizer import Tokenizer

from .data import ExampleStream, WorkerStream, shard_seed

log = logging.getLogger("distill")

# How many training pairs to look at when building a tokenizer or measuring lengths.
SURVEY_PAIRS = 5000


def to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg or {})


def build_task(task_cfg: DictConfig | dict):
    """``load_task`` from the ``task`` config group (name, options, path)."""
    return task_from_config(task_cfg)


def survey(task, seed: int, n: int = SURVEY_PAIRS) -> list[tuple[str, str]]:
    """The first ``n`` training pairs of a stream with another seed (for vocab/lengths)."""
    return list(itertools.islice(task.train_examples(seed + 10_007), n))


def build_tokenizer(task, tok_cfg: dict, seed: int) -> Tokenizer:
    """Character vocabulary of the task's texts (``numbers``: plus one token per
    integer up to ``max_number``), or a BPE trained on them."""
    pairs = survey(task, seed)
    texts = [p + "\n" + t for p, t in pairs]
    kind = tok_cfg.get("kind", "char")
    if kind in ("char", "numbers"):
        # Evaluation prompts may hold characters that a sample of training pairs
        # lacks; include them, and the digits every task answers with.
        extra = "".join(task.format_prompt(p) for p in eval_problems(task, "test", 200))
        alphabet = "".join(sorted(set("".join(texts) + extra + "0123456789")))
        if kind == "numbers":
            return Tokenizer.numbers(alphabet, int(tok_cfg.get("max_number", 999)))
        return Tokenizer.char_level(alphabet)
    if tok_cfg.get("kind") == "bpe":
        return Tokenizer.train_bpe(texts, int(tok_cfg.get("vocab_size", 2048)))
    raise ValueError(f"task.tokenizer.kind={tok_cfg.get('kind')!r} is unknown; use char, numbers or bpe")


def measure_gen_length(task, tokenizer: Tokenizer, seed: int) -> int:
    """Longest target (in tokens) of a sample of training pairs, + EOS, + 12.5 % slack."""
    longest = max(len(tokenizer.encode(t)) for _, t in survey(task, seed))
    return int(longest * 1.125) + 2


def eval_problems(task, split: str, limit: int) -> list:
    """Problems of ``split`` (falls back to test when the task has no such split)."""
    try:
        return task.problems(split=split, limit=limit)
    except (ValueError, KeyError):
        if split == "test":
            raise
        log.info("task %s has no %r split; evaluating on test", getattr(task, "name", task), split)
        return task.problems(split="test", limit=limit)


def make_stream(task, tokenizer: Tokenizer, gen_length: int, seed: int, rank: int = 0, world_size: int = 1,
                format_prompt=None, workers: int = 0) -> ExampleStream | WorkerStream:
    """The task's training pairs; ``format_prompt`` rewrites each prompt (e.g. a chat template).

    ``workers`` > 0: examples made by that many DataLoader worker processes, each with
    its own stream seeded by (seed, rank, worker) (``WorkerStream``); 0: one stream in
    this process, rank r keeping every world_size-th pair.
    """
    def pairs_of(stream_seed: int):
        pairs = task.train_examples(stream_seed)
        if format_prompt is not None:
            pairs = ((format_prompt(prompt), target) for prompt, target in pairs)
        return pairs

    if workers:
        return WorkerStream(lambda worker: pairs_of(shard_seed(seed, rank * workers + worker)),
                            tokenizer=tokenizer, gen_length=gen_length, workers=workers)
    return ExampleStream(pairs_of(seed), tokenizer=tokenizer, gen_length=gen_length, rank=rank, world_size=world_size)


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoint"
