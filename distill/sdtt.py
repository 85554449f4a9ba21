"""Self-Distillation Through Time: few-step students from a masked diffusion teacher.

    python -m distill.sdtt teacher=runs/pretrain-countdown/checkpoint min_steps=4

Round r trains a student (initialised from the teacher) so that one of its
ancestral steps of size 2 dt matches two teacher steps of size dt, with
dt = 1 / teacher_steps: the positions are revealed alike (2 dt / t each), and the
student's predictions are fit to Algorithm 1's target (``target=paper``, the
paper's approximation of the two steps' token law) or to one whose mean is that
law exactly (``target=marginal``); see ``sdtt_math.teacher_targets``. At each
round boundary the student's step count is halved and the student becomes the
teacher; the optimiser and the EMA carry on. Each round writes a
checkpoint whose meta records its sampling steps, and a row of ``rounds.json``
with pass@1 of the student at its steps next to the original teacher's at its
full steps.

The program: ``run`` = ``prepare`` (check the options, load the teacher, build the
student, the data stream and the trainer) then ``Distillation.run`` (the rounds: its
``loss`` for the trainer, ``on_step`` closing each round with ``finish_round``).
"""
from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from sdtt_search.ar import is_ar_checkpoint
from sdtt_search.cli import cli_main
from sdtt_search.checkpoint import load_pretrained, save_pretrained
from sdtt_search.diffusion import (LogLinearSchedule, SamplerConfig, attention_block, categorical, denoise,
                                   first_generated_column, fit_blocks, is_time_conditioned, mask_tokens, sample_times,
                                   subs_log_probs, uniform)
from sdtt_search.diffusion.samplers import supports_prefix_cache

from sdtt_search.lora import LoRASpec, attach_lora, lora_state, save_lora_checkpoint
from sdtt_search.zoo import resolve_model_path

from .distributed import DistContext
from .evaluate import evaluate_task
from .lora import SharedWeightsTeacher
from .sdtt_math import DIVERGENCES, TARGETS, RoundPlan, divergence, teacher_targets
from .setup import build_task, eval_problems, make_stream, resolve_device, to_dict
from .trainer import TrainConfig, Trainer

log = logging.getLogger("distill.sdtt")


def block_layout(maskable: torch.Tensor, rows: torch.Tensor, block: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The state of a block-wise sampler about to decode one block in one step.

    For each row in ``rows`` draw a block index k uniformly; the completion tokens
    [k * block, (k + 1) * block) form the block (all masked), earlier ones are clean,
    later ones masked (future blocks). Returns (first, second, future) [B, L] bool: the
    block's left half (ceil(block / 2) tokens), its right half, and the future.

    Args:
        maskable: [B, L] completion positions (every row the same count, as ``collate`` makes them).
        rows: [B] bool; block: the student's block length.
    """
    index = maskable.long().cumsum(-1) - 1
    n = maskable.sum(-1)
    blocks = (n + block - 1) // block
    k = (uniform(n.shape, generator, maskable.device) * blocks).long()[:, None]
    lo, mid, hi = k * block, k * block + (block + 1) // 2, (k + 1) * block
    sel = maskable & rows[:, None]
    return sel & (index >= lo) & (index < mid), sel & (index >= mid) & (index < hi), sel & (index >= hi)


def tail_layout(maskable: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The state of a left-to-right sampler with a step budget about to decode the
    rest of a completion: per row a clean prefix of k tokens (k uniform in [0, n)),
    the tail [k, n) masked. Returns (tail [B, L] bool, order): order[i] [B, L] holds
    each row's tail column k + i, the one its teacher reveals at step i."""
    index = maskable.long().cumsum(-1) - 1
    n = maskable.sum(-1)
    k = (uniform(n.shape, generator, maskable.device) * n).long()[:, None]
    tail = maskable & (index >= k)
    return tail, [tail & (index == k + i) for i in range(int((n[:, None] - k).max()))]


def _plain_causal(teacher) -> bool:
    """A causal denoiser with a prefix KV cache, neither block-causal nor time-conditioned."""
    return supports_prefix_cache(teacher) and not attention_block(teacher) and not is_time_conditioned(teacher)


@torch.no_grad()
def causal_tail_targets(teacher, x: torch.Tensor, tail: torch.Tensor, attention_mask: torch.Tensor, *,
                        mask_id: int, generator: torch.Generator | None, temperature: float = 1.0,
                        noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``layout=tail`` targets of a plain causal teacher in one left-to-right pass with
    its KV cache: the logits at column j only see columns < j, so the teacher
    revealing a tail column per step (``teacher_targets`` with ordered reveals) gives
    the same targets as this scan, one column per call instead of the whole sequence
    per step. Returns (target log-probs [B, L, V] (meaningful on ``tail``), the
    teacher's path [B, L]). ``noise`` [B, L] float64: draw column j by inverse CDF at
    noise[:, j] (default: fresh uniforms from ``generator``)."""
    columns = tail.any(0).nonzero().squeeze(-1)
    current = torch.where(tail, torch.full_like(x, mask_id), x)
    cache = teacher.new_cache()
    target, start = None, 0
    for col in range(int(columns[0]), int(columns[-1]) + 1):
        span = teacher.forward_span(current, attention_mask, start, col, cache)
        cache.extend(col - start)
        start = col
        log_probs = subs_log_probs(span[:, -1:], current[:, col:col + 1], mask_id)[:, 0].float()
        if temperature != 1.0:
            log_probs = torch.log_softmax(log_probs / temperature, dim=-1)
        if target is None:
            target = log_probs.new_zeros(*x.shape, log_probs.shape[-1])
        target[:, col] = log_probs
        rows = tail[:, col]
        if rows.any():
            if noise is not None:
                u = noise[rows, col]
            else:
                u = torch.rand(int(rows.sum()), generator=generator, dtype=torch.float64).to(x.device)
            current[rows, col] = categorical(log_probs[rows].double().exp(), u)
    return target, current


@dataclass
class SDTTTargets:
    """One batch laid out for the student and the teacher's targets on it (``sdtt_targets``).

    Attributes:
        z: [B, L] long, the student's input (z_t: the masked positions hold the mask id).
        t: [B] float, each row's diffusion time (1 under ``layout=tail``).
        target: [B, L, V] float log-probs the student's one step is fit to (meaningful on ``scored``).
        scored: [B, L] bool, the positions the loss covers (a subset of the masked ones).
        noise: [B, L] float64, a noise-conditioned student's input (its sampling uniforms, NaN
            outside the completion); None unless ``noise_input``.
    """

    z: torch.Tensor
    t: torch.Tensor
    target: torch.Tensor
    scored: torch.Tensor
    noise: torch.Tensor | None = None


@dataclass
class SDTTLoss:
    """A loss evaluation as ``Trainer`` reads it: the loss (a float32 scalar) and the
    number of positions it covers."""

    loss: torch.Tensor
    num_tokens: int


def sdtt_targets(teacher, batch, generator, *, dt: float, mask_id: int, eps: float, conditional: bool,
                 semi_ar: float = 0.0, block: int | None = None, temperature: float = 1.0,
                 layout: str = "blocks", tail_reveal: float = 0.0, noise_input: bool = False,
                 target: str = "paper") -> SDTTTargets:
    """Draw t and z_t for a batch and the teacher's two-step targets (``SDTTTargets``).

    Times come from MDLM's stratified sampler and z_t masks the completion (or,
    unconditionally, every real token): Algorithm 1. The loss positions are the masked
    ones, or a subset of them in the ordered layouts.

    Block-wise SDTT (``semi_ar`` > 0, ``block`` = the student's block length): that
    fraction of rows is laid out as a block-wise sampler sees it before decoding a
    block in one step (``block_layout``). The teacher of this round decodes blocks half
    as long, so its two steps are: the block's left half from z, then the right half
    given the drawn left half. The student's one step over the block is scored
    against those two steps' log-probs (the same one-vs-two-steps target as Algorithm
    1, with the sampler's left-to-right order in place of random reveals).
    ``temperature``: the teacher samples and scores at it (``teacher_targets``).

    ``target``: ``paper`` (Algorithm 1: each position takes the log-probs of the
    teacher step that revealed it, the last step's if none did; its mean is the
    two-step token law only where reveals are ordered or t <= 2 dt) or ``marginal``
    (its mean is that law exactly; fit with ``fkl``); ``teacher_targets`` says what
    each is. The ordered layouts (block-wise rows, tails) give both the same targets.

    ``layout="tail"`` (every row, semi_ar=1): see ``tail_targets``.
    """
    if target not in TARGETS:
        raise ValueError(f"target={target!r} is unknown; use paper (SDTT's Algorithm 1) or marginal (the teacher's "
                         "exact two-step marginal)")
    if layout == "tail":
        return tail_targets(teacher, batch, generator, dt=dt, mask_id=mask_id, eps=eps, conditional=conditional,
                            semi_ar=semi_ar, temperature=temperature, tail_reveal=tail_reveal,
                            noise_input=noise_input, target=target)
    if layout != "blocks":
        raise ValueError(f"layout={layout!r} is unknown; use blocks or tail")
    if noise_input:
        raise ValueError("noise_input=true needs layout=tail (a causal student decoding left to right)")
    return block_targets(teacher, batch, generator, dt=dt, mask_id=mask_id, eps=eps, conditional=conditional,
                         semi_ar=semi_ar, block=block, temperature=temperature, target=target)


def block_targets(teacher, batch, generator, *, dt: float, mask_id: int, eps: float, conditional: bool,
                  semi_ar: float, block: int | None, temperature: float, target: str) -> SDTTTargets:
    """``layout=blocks`` (``sdtt_targets``): z_t at MDLM's stratified times, random
    reveals scored on every masked position; with ``semi_ar`` > 0 that share of rows laid
    out block-wise (``block_layout``) and scored on the block's two halves."""
    maskable = batch.maskable if conditional else batch.attention_mask
    gen_start = first_generated_column(maskable)
    t = sample_times(batch.x.shape[0], eps=eps, generator=generator, device=batch.x.device)
    z = mask_tokens(batch.x, LogLinearSchedule().move_chance(t), maskable, mask_id, generator)
    if semi_ar <= 0.0:
        log_probs = teacher_targets(teacher, z, t, dt, mask_id=mask_id, attention_mask=batch.attention_mask,
                                    eps=eps, generator=generator, temperature=temperature, gen_start=gen_start,
                                    target=target)
        return SDTTTargets(z, t, log_probs, z == mask_id)
    if not block:
        raise ValueError("semi_ar > 0 needs the student's block length (eval.block_length or the teacher's recorded one)")
    rows = uniform(batch.x.shape[0], generator, batch.x.device) < semi_ar
    first, second, future = block_layout(maskable, rows, block, generator)
    z = torch.where(rows[:, None] & maskable, batch.x, z)
    z = torch.where(first | second | future, torch.full_like(z, mask_id), z)
    log_probs = teacher_targets(teacher, z, t, dt, mask_id=mask_id, attention_mask=batch.attention_mask,
                                eps=eps, generator=generator, frozen=future | first | second,
                                ordered=(first, second), temperature=temperature, gen_start=gen_start,
                                target=target)
    scored = torch.where(rows[:, None], first | second, z == mask_id)
    return SDTTTargets(z, t, log_probs, scored)


def tail_targets(teacher, batch, generator, *, dt: float, mask_id: int, eps: float, conditional: bool,
                 semi_ar: float, temperature: float, tail_reveal: float, noise_input: bool,
                 target: str) -> SDTTTargets:
    """``layout=tail`` (``sdtt_targets``; every row, semi_ar=1): the student decodes a
    whole tail in one step, as a budgeted threshold sampler's calls do (``tail_layout``),
    and its teacher decodes that tail one column per step, left to right: SDTT's
    one-vs-two-steps target with as many teacher steps as tail columns. A column's target
    is the teacher's conditional along its own sampled path, an unbiased one-path estimate
    of its marginal given the prefix (fit it with ``fkl``, whose minimiser is the mean).
    ``tail_reveal`` r: each row shows the student a share u * r (u uniform) of its tail
    columns after the first, drawn from the teacher's path (the sure tokens a threshold
    sampler commits early); the loss covers the others. t is 1 for every row.

    ``noise_input`` (a plain causal teacher, a noise-conditioned student): the teacher
    samples the whole completion left to right, column j by inverse CDF at a uniform u_j;
    the prefix the student sees is that path (so every shown token agrees with its u_j)
    and u is the student's noise input (``SDTTTargets.noise``). With u_j known, the
    teacher's conditional at a tail column j + 1 given its own path is a function of the
    prefix and u: a student that sees u can match it exactly in one call, which a
    per-column student cannot (it can only reach the average over u).
    """
    if semi_ar != 1.0 or not conditional:
        raise ValueError("layout=tail lays out every row as a left-to-right sampler does: set semi_ar=1.0 "
                         "and conditional=true")
    gen_start = first_generated_column(batch.maskable)
    t = torch.ones(batch.x.shape[0], device=batch.x.device)
    tail, order = tail_layout(batch.maskable, generator)
    z = torch.where(tail, torch.full_like(batch.x, mask_id), batch.x)
    noise = None
    if noise_input:
        if not _plain_causal(teacher):
            raise ValueError("noise_input=true distils a plain causal teacher's left-to-right sampler (an AR "
                             "twin or a causal denoiser): this teacher is not one")
        u = torch.rand(batch.x.shape, generator=generator, dtype=torch.float64).to(batch.x.device)
        log_probs, path = causal_tail_targets(teacher, batch.x, batch.maskable, batch.attention_mask, mask_id=mask_id,
                                              generator=generator, temperature=temperature, noise=u)
        z = torch.where(tail, z, path)
        noise = torch.where(batch.maskable, u, torch.full_like(u, float("nan")))
    elif _plain_causal(teacher):
        log_probs, path = causal_tail_targets(teacher, batch.x, tail, batch.attention_mask, mask_id=mask_id,
                                              generator=generator, temperature=temperature)
    else:
        log_probs, path = teacher_targets(teacher, z, t, dt, mask_id=mask_id, attention_mask=batch.attention_mask,
                                          n_steps=len(order), eps=eps, generator=generator, frozen=tail,
                                          ordered=tuple(order), temperature=temperature, gen_start=gen_start,
                                          return_tokens=True, target=target)
    rate = uniform(batch.x.shape[0], generator, batch.x.device)[:, None] * tail_reveal
    shown = tail & ~order[0] & (uniform(batch.x.shape, generator, batch.x.device) < rate)
    z = torch.where(shown, path, z)
    return SDTTTargets(z, t, log_probs, tail & ~shown, noise)


@torch.no_grad()
def own_draw_targets(student, teacher, z: torch.Tensor, tail: torch.Tensor, noise: torch.Tensor,
                     attention_mask: torch.Tensor, *, mask_id: int, temperature: float = 1.0) -> torch.Tensor:
    """On-policy tail targets of a noise-conditioned student: it draws the masked
    ``tail`` of z [B, L] in one call, column j at its noise u_j (as its sampler will),
    and the plain causal teacher scores that draw column by column: the target at j is
    the teacher's conditional given the prefix and the student's own draws before j.
    So column j + 1 learns to follow the token column j really draws, not the teacher's
    (they differ wherever the two distributions put u_j on different sides of a CDF
    step). Returns target log-probs [B, L, V] (meaningful on ``tail``)."""
    was_training = student.training
    student.eval()
    logits = student(z, attention_mask=attention_mask, noise=noise)
    student.train(was_training)
    drawn = categorical(subs_log_probs(logits, z, mask_id).double().exp(), torch.nan_to_num(noise))
    path = torch.where(tail, drawn, z)
    target = subs_log_probs(teacher(path, attention_mask=attention_mask), torch.full_like(path, mask_id), mask_id)
    if temperature != 1.0:
        target = torch.log_softmax(target / temperature, dim=-1)
    return target.float()


def student_divergence(student, z, t, target, attention_mask, *, mask_id: int, kind: str, precision: int,
                       scored: torch.Tensor | None = None, gen_start: int = 0,
                       noise: torch.Tensor | None = None, first_column_weight: float = 0.0) -> "SDTTLoss":
    """Divergence of the student's one-step prediction on z_t from the targets.

    The loss covers the positions masked in z_t (or ``scored``, a subset of them),
    all weighted equally (no 1/t weight). ``gen_start``: the first generated
    column (for block-causal students). ``noise``: a noise-conditioned student's input.
    ``first_column_weight`` w: adds w x the divergence over each row's first scored
    column (mean over rows), the column a left-to-right sampler always commits and
    whose target, under ``layout=tail``, is the teacher's next-token conditional.
    """
    if first_column_weight < 0:
        raise ValueError(f"first_column_weight={first_column_weight} must be >= 0 (0 turns it off)")
    sigma = LogLinearSchedule().sigma(t) if is_time_conditioned(student) else None
    logits = denoise(student, z, attention_mask=attention_mask, sigma=sigma, gen_start=gen_start, noise=noise)
    masked = z == mask_id if scored is None else scored
    dtype = torch.float64 if precision == 64 else torch.float32
    s = subs_log_probs(logits[masked].to(dtype)[None], z[masked][None], mask_id)[0]
    loss = divergence(s, target[masked].to(dtype), kind, mask_id) if masked.any() else logits.sum() * 0.0
    if first_column_weight > 0 and masked.any():
        first = masked & (masked.long().cumsum(-1) == 1)  # each row's first scored column
        loss = loss + first_column_weight * divergence(s[first[masked]], target[first].to(dtype), kind, mask_id)
    return SDTTLoss(loss=loss.float(), num_tokens=int(masked.sum()))


def sdtt_loss(student, teacher, batch, generator, *, dt: float, mask_id: int, kind: str,
              eps: float, precision: int, conditional: bool, semi_ar: float = 0.0,
              block: int | None = None, temperature: float = 1.0, layout: str = "blocks",
              tail_reveal: float = 0.0, noise_input: bool = False, on_policy: bool = False,
              first_column_weight: float = 0.0, target: str = "paper") -> SDTTLoss:
    """One SDTT loss evaluation: fresh z_t, teacher targets, student divergence.
    ``on_policy`` (with ``noise_input``): targets along the student's own draws
    (``own_draw_targets``). ``first_column_weight``: see ``student_divergence``.
    ``target``: paper | marginal, see ``sdtt_targets``."""
    if on_policy and not noise_input:
        raise ValueError("on_policy=true scores a noise-conditioned student's own draws: set noise_input=true")
    out = sdtt_targets(teacher, batch, generator, dt=dt, mask_id=mask_id, eps=eps, conditional=conditional,
                       semi_ar=semi_ar, block=block, temperature=temperature, layout=layout, tail_reveal=tail_reveal,
                       noise_input=noise_input, target=target)
    fit_to = out.target
    if on_policy:
        fit_to = own_draw_targets(student, teacher, out.z, out.scored, out.noise, batch.attention_mask, mask_id=mask_id,
                                  temperature=temperature)
    gen_start = first_generated_column(batch.maskable if conditional else batch.attention_mask)
    return student_divergence(student, out.z, out.t, fit_to, batch.attention_mask, mask_id=mask_id, kind=kind,
                              precision=precision, scored=out.scored, gen_start=gen_start, noise=out.noise,
                              first_column_weight=first_column_weight)


# ---------------------------------------------------------------------------- the program
@dataclass(frozen=True)
class Options:
    """The run's choices read from the config and checked (``check_options``)."""

    target: str  # paper | marginal (``sdtt_targets``)
    layout: str  # blocks | tail
    noise_input: bool
    on_policy: bool
    first_column_weight: float

    @property
    def tail(self) -> bool:
        return self.layout == "tail"


def check_options(cfg: DictConfig) -> Options:
    """The options that need nothing loaded, checked in one place (a ValueError names the
    key); those that depend on the models are checked by ``check_against_models`` once loaded."""
    if cfg.divergence not in DIVERGENCES:
        raise ValueError(f"divergence={cfg.divergence!r} is unknown; use one of {', '.join(DIVERGENCES)}")
    if int(cfg.loss_precision) not in (32, 64):
        raise ValueError(f"loss_precision={cfg.loss_precision!r} must be 32 or 64")
    target = str(cfg.get("target", "paper"))
    if target not in TARGETS:
        raise ValueError(f"target={target!r} is unknown; use paper (SDTT's Algorithm 1) or marginal (the teacher's "
                         "exact two-step marginal, with divergence=fkl)")
    for key in ("teacher_temperature", "round_temperature"):
        if not float(cfg[key]) > 0:
            raise ValueError(f"{key}={cfg[key]!r} must be > 0 (1.0 = the teacher's own distribution)")
    return Options(target=target, layout=str(cfg.get("layout", "blocks")),
                   noise_input=bool(cfg.get("noise_input", False)), on_policy=bool(cfg.get("on_policy", False)),
                   first_column_weight=float(cfg.get("first_column_weight", 0.0)))


def teacher_meta(cfg: DictConfig, source) -> dict:
    """The teacher checkpoint's meta with ``task`` and ``gen_length`` from the config where
    given; both must be known (hub teachers record neither)."""
    meta = dict(source.meta)
    if cfg.task and cfg.task.get("name"):
        meta["task"] = to_dict(cfg.task)
    if cfg.gen_length:
        meta["gen_length"] = int(cfg.gen_length)
    for key in ("task", "gen_length"):
        if not meta.get(key):
            raise ValueError(f"teacher={cfg.teacher} does not record its {key}; pass {key}=... "
                             f"(e.g. task.name=gsm8k task.path=<dir> gen_length=256)")
    return meta


def round_plan(cfg: DictConfig, meta: dict, source, options: Options) -> RoundPlan:
    """Each round's teacher and student steps: halving from the teacher's steps to
    ``min_steps`` (``layout=blocks``), or one round straight to it (``layout=tail``)."""
    if options.layout not in ("blocks", "tail"):
        raise ValueError(f"layout={options.layout!r} is unknown; use blocks (block-wise rounds) or tail (one round "
                         "to a step budget)")
    teacher_steps = int(cfg.teacher_steps or meta.get("sampling_steps") or source.default_sampler().steps)
    return RoundPlan(teacher_steps, int(cfg.min_steps), halving=not options.tail)


def student_and_teachers(cfg: DictConfig, source, tokenizer, device, lora: LoRASpec | None):
    """(original teacher, round-1 student, round-1 teacher). A full student is a copy of
    the teacher (or ``student_init``), the teacher a frozen copy; a LoRA student is the
    base with adapters and every teacher a snapshot of them (round 1: their
    zero-initialised state, i.e. the base), one copy of the weights in all."""
    if lora is None:
        original = source.model.to(device).eval()
        student = (copy.deepcopy(original) if not cfg.student_init
                   else _load_student_init(cfg.student_init, tokenizer, device)).train()
        return original, student, copy.deepcopy(original).eval()
    student = attach_lora(source.model.to(device), lora).train()
    return SharedWeightsTeacher(student), student, SharedWeightsTeacher(student)


def student_block_lengths(plan: RoundPlan, block_length: int | None, gen_length: int, tail: bool) -> list[int | None]:
    """Per round, the block length its student decodes: the teacher's sampler blocks
    widened by ``fit_blocks`` to the student's steps; None without block-wise decoding."""
    return [fit_blocks(SamplerConfig(method="confidence", steps=plan.student_steps_of(r),
                                     block_length=int(block_length)), gen_length).block_length
            if block_length and not tail else None for r in range(plan.rounds)]


def check_against_models(cfg: DictConfig, options: Options, student, block_length: int | None,
                         lora: LoRASpec | None) -> None:
    """The options that depend on the teacher's decoding or the student's architecture
    (block-wise rows need a block length; a tail, noise or block-causal student a causal
    Llama; LoRA only for students that start from the teacher)."""
    if cfg.student_init and lora is not None:
        raise ValueError("student_init starts a full student from a checkpoint; LoRA students start from the teacher (lora.r=0)")
    if float(cfg.semi_ar) > 0 and not block_length:
        raise ValueError("semi_ar > 0 distils block-wise decoding: set eval.block_length (the teacher records none)")
    if options.tail and (float(cfg.semi_ar) != 1.0 or cfg.block_causal or lora is not None):
        raise ValueError("layout=tail distils a causal student for budgeted left-to-right decoding: set semi_ar=1.0, "
                         "block_causal=false and lora.r=0")
    if options.first_column_weight < 0:
        raise ValueError(f"first_column_weight={options.first_column_weight} must be >= 0 (0 turns it off; 3 lifted "
                         "the CD3 noise student)")
    if options.noise_input:
        if not options.tail:
            raise ValueError("noise_input=true needs layout=tail (the noise-conditioned student decodes left to right)")
        if not hasattr(student, "enable_noise_input"):
            raise ValueError("noise_input=true needs a causal Llama student (an AR twin teacher, or student_init=<causal "
                             "denoiser>)")


def check_block_causal(student, student_blocks: list[int | None]) -> None:
    """``block_causal=true`` needs a causal Llama student and block-wise decoding."""
    if not (getattr(student, "config", None) is not None and getattr(student.config, "causal", False)
            and student_blocks[0]):
        raise ValueError("block_causal=true needs a causal Llama student (student_init=<model.causal=true checkpoint>, "
                         "or a causal teacher) and block-wise decoding (semi_ar > 0, eval.block_length)")


class Distillation:
    """One SDTT run: the models, the rounds' plan and table, and the trainer's callbacks.

    Round r (0-based) trains ``student`` against ``teacher`` (the original teacher in
    round 0, then the student as it ended the previous round) for ``steps_per_round``
    optimiser steps; ``on_step`` closes a round at its boundary (``finish_round``:
    score, checkpoint, promote the student to teacher) and keeps ``round`` current, which
    ``loss`` reads. ``prepare`` builds one from a config.

    Attributes:
        cfg: the composed ``sdtt`` config; options: its checked choices (``Options``).
        plan: each round's teacher and student steps.
        original: the original teacher (scored once, in ``rounds.json``'s ``teacher``).
        student: the trained model; teacher: the current round's teacher.
        student_blocks: per round, its student's decoding block (None: not block-wise).
        teacher_block: the original teacher's attention block (0: plain causal or bidirectional).
        block_length: the teacher's sampler blocks (None: not block-wise).
        table: ``rounds.json`` ({"teacher": its scores, "rounds": {"1": row, ...}}).
        round: the round the next optimiser step belongs to.
    """

    def __init__(self, cfg: DictConfig, options: Options, *, dist: DistContext, plan: RoundPlan, meta: dict,
                 tokenizer, task, problems, format_prompt, lora: LoRASpec | None, original, student, teacher,
                 block_length: int | None, student_blocks: list[int | None], teacher_block: int):
        self.cfg, self.options, self.dist, self.plan = cfg, options, dist, plan
        self.meta, self.tokenizer, self.format_prompt = meta, tokenizer, format_prompt
        self.task, self.problems = task, problems
        self.gen_length = int(meta["gen_length"])
        self.lora = lora
        self.original, self.student, self.teacher = original, student, teacher
        self.block_length, self.student_blocks, self.teacher_block = block_length, student_blocks, teacher_block
        self.out_dir = Path(cfg.output_dir)
        self.rounds_path = self.out_dir / "rounds.json"
        self.table = (json.loads(self.rounds_path.read_text()) if self.rounds_path.exists()
                      else {"teacher": None, "rounds": {}})
        self.round = 0

    # ------------------------------------------------------------ training
    def round_of(self, step: int) -> int:
        """The round optimiser step ``step`` (0-based) belongs to."""
        return min(step // int(self.cfg.steps_per_round), self.plan.rounds - 1)

    def set_attention_blocks(self, trainer: Trainer, r: int) -> None:
        """Block-causal SDTT: round r's student attends within its decoding block, its
        teacher (the previous student) within the previous round's."""
        for model in (trainer.module, trainer.ema.model):
            model.config.attention_block = int(self.student_blocks[r])
        self.teacher.config.attention_block = int(self.student_blocks[r - 1]) if r > 0 else self.teacher_block

    def loss(self, model, batch, generator) -> SDTTLoss:
        """``Trainer``'s loss: ``sdtt_loss`` of ``model`` against this round's teacher at
        its step size dt = (1 - eps) / teacher steps, and its temperature."""
        cfg, r = self.cfg, self.round
        return sdtt_loss(model, self.teacher, batch, generator, dt=(1.0 - cfg.eps) / self.plan.teacher_steps_of(r),
                         mask_id=self.tokenizer.mask_id, kind=cfg.divergence, eps=cfg.eps,
                         precision=int(cfg.loss_precision), conditional=cfg.conditional, semi_ar=float(cfg.semi_ar),
                         block=self.student_blocks[r],
                         temperature=float(cfg.teacher_temperature if r == 0 else cfg.round_temperature),
                         layout=self.options.layout, tail_reveal=float(cfg.get("tail_reveal", 0.0)),
                         noise_input=self.options.noise_input, on_policy=self.options.on_policy,
                         first_column_weight=self.options.first_column_weight, target=self.options.target)

    def on_step(self, trainer: Trainer, step: int) -> None:
        """Before optimiser step ``step``: close the round that ended there (if one did,
        and it is not the last: that one closes after training), then enter the step's
        round (block-causal: set the attention blocks it trains with)."""
        per_round = int(self.cfg.steps_per_round)
        if step > 0 and step % per_round == 0 and step // per_round <= self.plan.rounds - 1:
            self.finish_round(trainer, step // per_round - 1)
        self.round = self.round_of(step)
        if self.cfg.block_causal:
            self.set_attention_blocks(trainer, self.round)

    def trainer(self, stream, config: TrainConfig) -> Trainer:
        """The trainer of all rounds (one optimiser and EMA over the run); it saves and
        restores the current teacher with its own state."""
        return Trainer(
            model=self.student, loss_fn=self.loss, stream=stream, config=config, output_dir=self.out_dir,
            dist=self.dist, on_step=self.on_step,
            extra_state={"teacher": (lambda: self.teacher.state_dict(), lambda sd: self.teacher.load_state_dict(sd))},
        )

    def run(self, trainer: Trainer) -> list[dict]:
        """Train every round, close the last one (unless a finished run already did), and
        return the rounds table's rows (printed on rank 0)."""
        trainer.run()
        last = str(self.plan.rounds)
        if last not in self.table["rounds"] or self.table["rounds"][last]["train_step"] != trainer.step:
            self.finish_round(trainer, self.plan.rounds - 1)
        rows = [self.table["rounds"][k] for k in sorted(self.table["rounds"], key=int)]
        if self.dist.rank == 0:
            print(format_rounds(rows))
        return rows

    # ------------------------------------------------------------ round boundaries
    def sampler(self, steps: int, temperature: float = 1.0, student: bool = False) -> SamplerConfig:
        """The decoding a round is scored with: the teacher's sampler at ``steps`` (blocks
        widened to fit), or a tail student's step budget over the whole completion (the
        leftmost token plus the sure ones per call)."""
        cfg, meta = self.cfg, self.meta
        temperature = float(cfg.eval.temperature) * temperature
        if self.options.tail and student:
            return SamplerConfig(method="confidence", steps=steps, temperature=temperature,
                                 threshold=float(cfg.eval.get("threshold") or 0.9),
                                 remasking="prefix" if self.options.noise_input else "left_to_right")
        method = str(cfg.eval.method or dict(meta.get("sampler") or {}).get("method") or "ancestral")
        blocks = int(self.block_length) if self.block_length and method == "confidence" else None
        return fit_blocks(SamplerConfig(method=method, steps=steps, temperature=temperature, eps=float(cfg.eps),
                                        block_length=blocks), self.gen_length)

    def evaluate(self, model, sampler: SamplerConfig) -> dict:
        """pass@1 and friends of ``model`` on the validation problems (``evaluate_task``)."""
        return evaluate_task(model, self.tokenizer, self.task, self.problems, sampler, gen_length=self.gen_length,
                             batch_size=self.cfg.eval.batch_size, format_prompt=self.format_prompt)

    def finish_round(self, trainer: Trainer, r: int) -> None:
        """Close round r: rank 0 scores its student and writes its checkpoint and
        ``rounds.json`` row (``record_round``); then every rank promotes the student to
        the next round's teacher."""
        if self.cfg.block_causal:
            self.set_attention_blocks(trainer, r)
        if self.dist.rank == 0:
            self.record_round(trainer, r)
        self.dist.barrier()
        self.promote_student(trainer)

    def record_round(self, trainer: Trainer, r: int) -> None:
        """Score round r's student (EMA weights, at its steps) beside the original teacher
        (at its full steps, scored once), save its checkpoint and its row of ``rounds.json``."""
        cfg, plan = self.cfg, self.plan
        steps = plan.student_steps_of(r)
        if self.table["teacher"] is None:
            # The students learn the teacher's sampler at teacher_temperature (x eval.temperature
            # when they are sampled at that: (p^(1/a))^(1/b) = p^(1/ab)); score it the same way.
            self.table["teacher"] = self.evaluate(self.original,
                                                  self.sampler(plan.teacher_steps, float(cfg.teacher_temperature)))
        result = self.evaluate(trainer.ema.model, self.sampler(steps, student=True))
        teacher_pass = self.table["teacher"]["pass@1"]
        self.table["rounds"][str(r + 1)] = {
            "round": r + 1, "student_steps": steps, "teacher_steps": plan.teacher_steps,
            "student_pass@1": result["pass@1"], "teacher_pass@1": teacher_pass,
            "ratio": result["pass@1"] / teacher_pass if teacher_pass else None,
            "entropy": result["entropy"], "samples_per_s": result["samples_per_s"], "train_step": trainer.step,
            "student_temperature": result["temperature"],
            "teacher_temperature": self.table["teacher"].get("temperature")}
        round_dir = self.out_dir / f"round-{r + 1}-steps-{steps}"
        ckpt_meta = self.checkpoint_meta(steps, r, trainer.step)
        if self.lora is None:
            save_pretrained(round_dir, trainer.ema.model, self.tokenizer, meta=ckpt_meta)
        else:
            save_lora_checkpoint(round_dir, trainer.ema.model, base=_base_spec(cfg.teacher), spec=self.lora,
                                 meta=ckpt_meta, load_options=_load_options(cfg))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.rounds_path.write_text(json.dumps(self.table, indent=2))
        log.info("round %d (%d steps): pass@1 %.3f vs teacher %.3f", r + 1, steps, result["pass@1"], teacher_pass)

    def checkpoint_meta(self, steps: int, r: int, train_step: int) -> dict:
        """Round r's checkpoint meta: the teacher's, with the student's steps, the decoding
        the rounds were scored with (blocks as the teacher's; loading widens them) and how
        it was distilled (``sdtt``)."""
        cfg, options = self.cfg, self.options
        decoding = {k: v for k, v in self.sampler(self.plan.teacher_steps, student=options.tail).to_dict().items()
                    if k != "steps"}
        return {**self.meta, "sampling_steps": steps, "sampler": decoding, "sdtt": {
            "round": r + 1, "divergence": cfg.divergence, "target": options.target,
            "teacher": str(cfg.teacher), "teacher_steps": self.plan.teacher_steps, "train_step": train_step,
            "student_init": str(cfg.student_init) if cfg.student_init else None,
            "semi_ar": float(cfg.semi_ar), "block_causal": bool(cfg.block_causal), "layout": options.layout,
            "noise_input": options.noise_input, "on_policy": options.on_policy,
            "first_column_weight": options.first_column_weight,
            "teacher_temperature": float(cfg.teacher_temperature),
            "round_temperature": float(cfg.round_temperature)}}

    def promote_student(self, trainer: Trainer) -> None:
        """The student becomes the next round's teacher: its raw weights, as SDTT (its EMA
        with ``teacher_from_ema``); a LoRA student's teacher is a snapshot of its adapters."""
        source_model = trainer.ema.model if self.cfg.teacher_from_ema else trainer.module
        if self.lora is None:
            self.teacher = copy.deepcopy(source_model).eval()
        else:
            self.teacher = SharedWeightsTeacher(self.student, lora_state(source_model))


def prepare(cfg: DictConfig) -> tuple[Distillation, Trainer]:
    """Load and check everything a run needs, in an order that keeps runs reproducible
    (the global seed, then the teacher, the student, the data stream, the noise input):
    the ``Distillation`` and its ``Trainer``."""
    options = check_options(cfg)
    dist = DistContext.from_env()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    source, format_prompt = _load_teacher(cfg, device)
    tokenizer, meta = source.tokenizer, teacher_meta(cfg, source)
    plan = round_plan(cfg, meta, source, options)
    gen_length = int(meta["gen_length"])
    task = build_task(meta["task"])
    problems = eval_problems(task, cfg.eval.split, cfg.eval.problems)
    lora = LoRASpec(**to_dict(cfg.lora)) if cfg.lora.r else None
    original, student, teacher = student_and_teachers(cfg, source, tokenizer, device, lora)
    if cfg.gradient_checkpointing:
        _enable_gradient_checkpointing(student)
    train_cfg = TrainConfig(**{**to_dict(cfg.train), "steps": plan.rounds * int(cfg.steps_per_round)})
    stream = make_stream(task, tokenizer, gen_length, cfg.seed, dist.rank, dist.world_size, format_prompt=format_prompt,
                         workers=int(cfg.train.get("data_workers", 0)))
    # Block-wise decoding: the teacher's sampler blocks (eval.block_length, or the one its
    # checkpoint records); a student of S steps decodes blocks widened by fit_blocks.
    block_length = cfg.eval.block_length or dict(meta.get("sampler") or {}).get("block_length")
    student_blocks = student_block_lengths(plan, block_length, gen_length, options.tail)
    check_against_models(cfg, options, student, block_length, lora)
    if not options.tail and not str(cfg.teacher).startswith("hf:") \
            and is_ar_checkpoint(resolve_model_path(cfg.teacher)) and plan.teacher_steps < gen_length:
        # Block-wise rounds: a teacher step that commits two tokens asks the causal model for a
        # token whose left neighbour is still masked: noise targets, students that learn nothing.
        fit = plan.min_steps * 2 ** math.ceil(math.log2(gen_length / plan.min_steps))
        raise ValueError(f"teacher={cfg.teacher} is an AR model, which decodes one token per step: teacher_steps "
                         f"({plan.teacher_steps}) must be at least gen_length ({gen_length}); pass teacher_steps={fit} "
                         f"or a shorter gen_length")
    if options.noise_input:
        student.enable_noise_input()
    if cfg.block_causal:
        check_block_causal(student, student_blocks)
    teacher_block = int(getattr(getattr(original, "config", None), "attention_block", 0) or 0)
    distillation = Distillation(cfg, options, dist=dist, plan=plan, meta=meta, tokenizer=tokenizer, task=task,
                                problems=problems, format_prompt=format_prompt, lora=lora, original=original,
                                student=student, teacher=teacher, block_length=block_length,
                                student_blocks=student_blocks, teacher_block=teacher_block)
    return distillation, distillation.trainer(stream, train_cfg)


def run(cfg: DictConfig) -> list[dict]:
    """Distil as configured; returns the rounds table."""
    distillation, trainer = prepare(cfg)
    return distillation.run(trainer)


def _load_options(cfg: DictConfig) -> dict:
    """How to load a Hugging Face teacher (trust_remote_code is never stored in a checkpoint)."""
    hf = to_dict(cfg.hf)
    return {"family": hf.get("family"), "dtype": hf.get("dtype"),
            "hf_options": {k: v for k, v in (hf.get("options") or {}).items() if v is not None}}


def _base_spec(teacher: str) -> str:
    """The base a LoRA checkpoint names: hub specs as given, local paths made absolute."""
    text = str(teacher)
    if text.startswith("hf:"):
        path = Path(text[3:].split("@")[0])
        return f"hf:{path.resolve()}" if path.is_dir() else text
    return str(resolve_model_path(text).resolve())


def _load_teacher(cfg: DictConfig, device):
    """(model object from ``load_model``, prompt formatter or None) for the configured teacher."""
    from sdtt_search.loading import load_ar_as_denoiser, load_model

    options = _load_options(cfg)
    hf_teacher = str(cfg.teacher).startswith("hf:")
    if hf_teacher and not cfg.lora.r:
        raise ValueError(f"teacher={cfg.teacher} is a Hugging Face model: distil it with a LoRA student "
                         "(lora.r=16; full copies of such teachers are not supported)")
    if not hf_teacher and is_ar_checkpoint(resolve_model_path(cfg.teacher)):
        # An AR teacher: its weights as a causal denoiser decoding one token per step (its own
        # sampler); the students learn to decode wider blocks (semi_ar=1, eval.block_length=1).
        return load_ar_as_denoiser(cfg.teacher, device=device), None
    source = load_model(cfg.teacher if hf_teacher else resolve_model_path(cfg.teacher), device=device,
                        trust_remote_code=bool(cfg.hf.trust_remote_code), family=options["family"],
                        dtype=options["dtype"], hf_options=options["hf_options"])
    if source.kind != "diffusion":
        raise ValueError(f"teacher={cfg.teacher} is a {source.kind} model; SDTT needs a masked diffusion checkpoint")
    return source, getattr(source, "format_prompt", None) if hf_teacher else None


def _load_student_init(spec: str, tokenizer, device):
    """The round-1 student from another diffusion checkpoint of the same vocabulary
    (e.g. a bidirectional denoiser trained block-wise, when the teacher is an AR twin)."""
    path = resolve_model_path(spec)
    if is_ar_checkpoint(path):
        raise ValueError(f"student_init={spec} is an AR checkpoint; give a diffusion one (e.g. distill.pretrain "
                         "model.backbone=llama init_from=<AR> semi_ar=1) or leave it null")
    loaded = load_pretrained(path, device=device)
    if loaded.tokenizer.vocab_size != tokenizer.vocab_size or loaded.tokenizer.mask_id != tokenizer.mask_id:
        raise ValueError(f"student_init={spec} has another tokenizer than the teacher "
                         f"({loaded.tokenizer.vocab_size} vs {tokenizer.vocab_size} tokens); use a model of the same task")
    return loaded.model


def _enable_gradient_checkpointing(model) -> None:
    """Recompute activations in backward: our DiT's flag, or a transformers model's switch."""
    inner = getattr(model, "network", None) or getattr(model, "denoiser", None) or model
    if hasattr(inner, "gradient_checkpointing_enable"):
        inner.gradient_checkpointing_enable()
    elif hasattr(inner, "gradient_checkpointing"):
        inner.gradient_checkpointing = True
    else:
        raise ValueError(f"gradient_checkpointing=true: {type(inner).__name__} has no checkpointing switch")


def format_rounds(rows: list[dict]) -> str:
    """Markdown table of the rounds."""
    head = "| round | steps | pass@1 | teacher pass@1 (steps) | ratio | entropy | samples/s |\n|---|---|---|---|---|---|---|"
    lines = [head]
    for r in rows:
        lines.append(f"| {r['round']} | {r['student_steps']} | {r['student_pass@1']:.3f} | {r['teacher_pass@1']:.3f} "
                     f"({r['teacher_steps']}) | {'-' if r['ratio'] is None else format(r['ratio'], '.2f')} | {r['entropy']:.3f} | {r['samples_per_s']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return cli_main(run, "sdtt", argv)


if __name__ == "__main__":
    raise SystemExit(main())
