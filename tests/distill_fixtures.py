"""Small configs for the training-program tests."""
from __future__ import annotations

from sdtt_search.cli import compose

TINY_MODEL = ["model.hidden_size=32", "model.n_layers=1", "model.n_heads=2", "model.cond_dim=16"]


def pretrain_config(output_dir, *extra: str):
    return compose("pretrain", [
        "task=countdown", f"output_dir={output_dir}", *TINY_MODEL,
        "train.steps=12", "train.batch_size=8", "train.warmup=2", "train.log_every=1", "train.save_every=4",
        "train.eval_every=0", "train.threads=1", "eval.problems=4", "eval.batch_size=4", "eval.sampler.steps=4",
        *extra,
    ])


def sdtt_config(output_dir, teacher, *extra: str):
    return compose("sdtt", [
        f"teacher={teacher}", f"output_dir={output_dir}", "teacher_steps=8", "min_steps=2", "steps_per_round=3",
        "train.batch_size=8", "train.log_every=1", "train.save_every=3", "train.threads=1", "train.warmup=1",
        "eval.problems=4", "eval.batch_size=4", *extra,
    ])
