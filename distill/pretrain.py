"""Train a masked diffusion LM (or its causal AR twin) from scratch on a task.

    python -m distill.pretrain task=countdown model=tiny train.steps=2000
    python -m distill.pretrain task=gsm8k model=mini objective=ar output_dir=runs/gsm8k-ar

Prompt tokens are never masked and the loss covers the completion only. Killing
the program and running the same command again resumes where it stopped. The EMA
weights are exported to ``<output_dir>/checkpoint`` at every save.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from sdtt_search.ar.checkpoint import is_ar_checkpoint, load_ar_pretrained, save_ar_pretrained
from sdtt_search.cli import cli_main
from sdtt_search.checkpoint import load_pretrained, save_pretrained
from sdtt_search.machine import describe
from sdtt_search.diffusion import SamplerConfig, ar_loss, fit_blocks, mdlm_loss, mdm_loss
from sdtt_search.model import Denoiser, ModelConfig, build_denoiser
from sdtt_search.model.llama import CausalLM, CausalLMConfig
from sdtt_search.tokenizer import Tokenizer
from sdtt_search.zoo import resolve_model_path

from .distributed import DistContext
from .evaluate import evaluate_ar_task, evaluate_task
from .setup import (
    build_task, build_tokenizer, checkpoint_dir, eval_problems, make_stream, measure_gen_length,
    resolve_device, to_dict,
)
from .trainer import TrainConfig, Trainer

log = logging.getLogger("distill.pretrain")

OBJECTIVES = ("mdlm", "mdm", "ar")


def build_model(cfg: DictConfig, tokenizer: Tokenizer, gen_length: int, max_prompt: int) -> Denoiser | CausalLM:
    """The denoiser (objective=mdlm; ``model.backbone`` dit or llama) or its AR twin
    (objective=ar): a Llama-architecture causal LM of the same width, depth and heads,
    SwiGLU of mlp_ratio x width (about the same parameter count), exported in Hugging
    Face Llama format."""
    fields = to_dict(cfg.model)
    fields.pop("name", None)
    fields["max_length"] = max(int(fields.get("max_length", 0) or 0), max_prompt + gen_length)
    if cfg.objective == "ar":
        return CausalLM(CausalLMConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=fields["hidden_size"], n_layers=fields["n_layers"],
            n_heads=fields["n_heads"], intermediate_size=fields["mlp_ratio"] * fields["hidden_size"],
            max_length=fields["max_length"], dropout=fields.get("dropout", 0.0),
            attention_backend=fields.get("attention_backend", "auto")))
    causal = bool(fields.pop("causal", False))
    if causal and fields.get("backbone", "dit") != "llama":
        raise ValueError("model.causal=true needs model.backbone=llama (a causal denoiser decodes block-wise with a "
                         "prefix cache); for an autoregressive model use objective=ar")
    config = ModelConfig(vocab_size=tokenizer.vocab_size, mask_id=tokenizer.mask_id, causal=causal, **fields)
    return build_denoiser(config)


def ar_targets(x: torch.Tensor, maskable: torch.Tensor, eos_id: int) -> torch.Tensor:
    """[B, L] bool: completion positions up to and including the first EOS (the AR
    model never has to predict the padding after it: decoding stops at EOS)."""
    eos = ((x == eos_id) & maskable).long()
    after_eos = (eos.cumsum(-1) - eos) > 0
    return maskable & ~after_eos


def make_loss(objective: str, mask_id: int, eos_id: int | None = None, semi_ar: float = 0.0,
              mdm: dict | None = None):
    if objective == "mdlm":
        def loss_fn(model, batch, generator):
            return mdlm_loss(model, batch.x, batch.maskable, mask_id=mask_id,
                             attention_mask=batch.attention_mask, generator=generator, semi_ar=semi_ar)
    elif objective == "mdm":
        weights = dict(mdm or {})

        def loss_fn(model, batch, generator):
            return mdm_loss(model, batch.x, batch.maskable, mask_id=mask_id, attention_mask=batch.attention_mask,
                            generator=generator, **weights)
    else:
        def loss_fn(model, batch, generator):
            targets = batch.maskable if eos_id is None else ar_targets(batch.x, batch.maskable, eos_id)
            return ar_loss(model, batch.x, targets, attention_mask=batch.attention_mask)
    return loss_fn


def load_initial_weights(model, init_model, source) -> None:
    """Copy ``init_model``'s weights into ``model`` (same architecture, or an AR twin into
    a ``model.backbone=llama`` denoiser: the DiffuLLaMA/Dream adaptation); one-line error
    naming the first mismatch otherwise."""
    target, state = model.state_dict(), init_model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        hint = (" (an AR twin initialises only model.backbone=llama)" if isinstance(init_model, CausalLM) else "")
        raise ValueError(f"init_from={source} does not fit this model{hint}: missing {missing[:2]}, unexpected {unexpected[:2]}")
    for name, tensor in target.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ValueError(f"init_from={source}: {name} has shape {tuple(state[name].shape)}, this model "
                             f"needs {tuple(tensor.shape)}; use the same model size")
    model.load_state_dict(state)


def _load_checkpoint(path):
    """(model, tokenizer, meta) of a diffusion or AR checkpoint directory."""
    loaded = load_ar_pretrained(path) if is_ar_checkpoint(path) else load_pretrained(path)
    return loaded.model, loaded.tokenizer, dict(loaded.meta)


def run(cfg: DictConfig) -> Path:
    """Train as configured; returns the exported checkpoint directory."""
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"objective={cfg.objective!r} is unknown; use one of {', '.join(OBJECTIVES)}")
    if not 0.0 <= float(cfg.semi_ar) <= 1.0:
        raise ValueError(f"semi_ar={cfg.semi_ar!r} must be a fraction in [0, 1]")
    if cfg.get("mdm"):
        unknown = set(to_dict(cfg.mdm)) - {"steps", "alpha", "gamma"}
        if unknown:
            raise ValueError(f"mdm.{sorted(unknown)[0]} is unknown; mdm takes steps, alpha and gamma")
    dist = DistContext.from_env()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.output_dir)
    task = build_task(cfg.task)
    export = checkpoint_dir(out_dir)

    # Tokenizer and lengths are fixed at the first start and reread on resume.
    if cfg.init_from:
        init_model, tokenizer, meta = _load_checkpoint(resolve_model_path(cfg.init_from))
        gen_length = int(cfg.task.gen_length or meta["gen_length"])
    elif (export / "config.json").exists():
        _, tokenizer, prev_meta = _load_checkpoint(export)
        gen_length = int(prev_meta["gen_length"])
    elif cfg.get("tokenizer_from"):
        # An AR twin must see exactly its diffusion twin's tokens and lengths.
        _, tokenizer, twin_meta = _load_checkpoint(resolve_model_path(cfg.tokenizer_from))
        gen_length = int(cfg.task.gen_length or twin_meta["gen_length"])
    else:
        tokenizer = build_tokenizer(task, to_dict(cfg.task.get("tokenizer")), cfg.seed)
        gen_length = int(cfg.task.gen_length or measure_gen_length(task, tokenizer, cfg.seed))
    problems = eval_problems(task, cfg.eval.split, cfg.eval.problems)
    max_prompt = max(len(tokenizer.encode(task.format_prompt(p))) for p in problems)
    model = build_model(cfg, tokenizer, gen_length, max_prompt * 2)
    if cfg.init_from:
        load_initial_weights(model, init_model, cfg.init_from)
    model.to(device)
    log.info("model: %.2fM parameters, gen_length %d, device %s", model.num_parameters / 1e6, gen_length, device)

    train_cfg = TrainConfig(**to_dict(cfg.train))
    stream = make_stream(task, tokenizer, gen_length, cfg.seed, dist.rank, dist.world_size,
                         workers=int(cfg.train.get("data_workers", 0)))
    # fewer steps than blocks: one step per widened block, as load_model decodes it
    sampler = fit_blocks(SamplerConfig(**to_dict(cfg.eval.sampler)), gen_length)

    def evaluate(ema_model, step):
        if cfg.objective == "ar":
            return evaluate_ar_task(ema_model, tokenizer, task, problems, gen_length=gen_length,
                                    temperature=float(sampler.temperature), batch_size=cfg.eval.batch_size)
        return evaluate_task(ema_model, tokenizer, task, problems, sampler, gen_length=gen_length,
                             batch_size=cfg.eval.batch_size)

    def export_checkpoint(trainer: Trainer, step: int) -> None:
        meta = {
            "kind": "ar" if cfg.objective == "ar" else "diffusion",
            "task": to_dict(cfg.task),
            "gen_length": gen_length,
            "sampling_steps": gen_length if cfg.objective == "ar" else int(sampler.steps),
            # How this model is meant to be decoded (method etc.; the step count is sampling_steps).
            "sampler": None if cfg.objective == "ar" else {k: v for k, v in sampler.to_dict().items() if k != "steps"},
            "init_from": str(cfg.init_from) if cfg.init_from else None,
            "semi_ar": float(cfg.semi_ar),
            "objective": str(cfg.objective),
            "train_steps": step,
            "train_seconds": round(trainer.train_seconds, 1),
            "device": str(device),
            "machine": describe(),
        }
        if cfg.objective == "ar":
            save_ar_pretrained(export, trainer.ema.model, tokenizer, meta=meta)
        else:
            save_pretrained(export, trainer.ema.model, tokenizer, meta=meta)

    trainer = Trainer(model=model, loss_fn=make_loss(cfg.objective, tokenizer.mask_id, tokenizer.eos_id, float(cfg.semi_ar),
                                                      to_dict(cfg.get("mdm")) if cfg.get("mdm") else None), stream=stream,
                      config=train_cfg, output_dir=out_dir, dist=dist,
                      evaluate=evaluate, on_save=export_checkpoint)
    history = trainer.run()
    finals = [h for h in history if h.get("final")]
    if finals and dist.rank == 0:
        print(json.dumps(finals[-1]))
    return export


def main(argv: list[str] | None = None) -> int:
    return cli_main(run, "pretrain", argv)


if __name__ == "__main__":
    raise SystemExit(main())
