"""The training loop shared by ``distill.pretrain`` and ``distill.sdtt``.

AdamW, linear warm-up then cosine or constant learning rate, gradient clipping,
gradient accumulation, EMA, fp32 on CPU / bf16 autocast on CUDA, a tqdm bar with
loss and tokens/s, periodic evaluation, and checkpoints that resume exactly: model,
EMA, optimiser, scheduler, RNG states and the data position are all saved.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from .data import ExampleStream, TrainBatch
from .distributed import DistContext
from .ema import EMA

STATE_FILE = "train_state.pt"


@dataclass
class TrainConfig:
    """Optimisation settings (Hydra group ``train``)."""

    steps: int = 1000
    batch_size: int = 64  # per optimiser step, over all ranks and micro-batches
    grad_accum: int = 1
    lr: float = 3e-4
    warmup: int = 100
    schedule: str = "cosine"  # or "constant"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    ema: float = 0.999
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on CPU), "fp32", "bf16"
    log_every: int = 10
    eval_every: int = 0  # 0: only at the end
    save_every: int = 200
    seed: int = 0
    threads: int = 0  # torch CPU threads, 0 = torch default
    data_workers: int = 0  # processes making training examples (distill.data.WorkerStream); 0 = in this process

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        checks = {
            "steps": self.steps >= 1, "batch_size": self.batch_size >= 1, "grad_accum": self.grad_accum >= 1,
            "lr": self.lr > 0, "warmup": self.warmup >= 0, "grad_clip": self.grad_clip >= 0,
            "ema": 0 <= self.ema < 1, "save_every": self.save_every >= 0, "eval_every": self.eval_every >= 0,
            "data_workers": self.data_workers >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"train.{name}={getattr(self, name)!r} is out of range")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"train.schedule={self.schedule!r} is unknown; use cosine or constant")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"train.precision={self.precision!r} is unknown; use auto, fp32 or bf16")

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` at optimiser step ``step`` (0-based)."""
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA under "auto"/"bf16"; None (fp32) otherwise.

    bf16 matmuls are ~100x slower than fp32 on common CPUs, so "auto" keeps fp32 there.
    """
    if precision == "fp32":
        return None
    if precision == "bf16" or device.type == "cuda":
        return torch.bfloat16
    return None


LossFn = Callable[[torch.nn.Module, TrainBatch, torch.Generator], Any]


@dataclass
class Trainer:
    """Runs ``config.steps`` optimiser steps of ``loss_fn`` on batches of ``stream``.

    Attributes:
        model: the trained module (possibly wrapped in DDP by ``dist``).
        loss_fn: (model, batch, generator) -> LossOutput with ``.loss`` and ``.num_tokens``.
        output_dir: where ``train_state.pt`` and ``log.jsonl`` go.
        evaluate: optional callback(ema_model, step) -> dict of metrics.
        on_step: optional callback(trainer, step) run before each step (SDTT rounds).
        extra_state: callables to save/restore more state (e.g. the SDTT teacher).
    """

    model: torch.nn.Module
    loss_fn: LossFn
    stream: ExampleStream
    config: TrainConfig
    output_dir: Path
    dist: DistContext = field(default_factory=DistContext)
    evaluate: Callable[[torch.nn.Module, int], dict] | None = None
    on_step: Callable[["Trainer", int], None] | None = None
    on_save: Callable[["Trainer", int], None] | None = None
    extra_state: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = field(default_factory=dict)
    show_progress: bool = True

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        self.device = next(self.model.parameters()).device
        self.module = self.model
        self.ddp_model = self.dist.wrap(self.model)
        cfg = self.config
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (decay if p.dim() >= 2 else no_decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=cfg.betas,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cfg.lr_factor)
        self.ema = EMA(self.model, cfg.ema)
        self.generator = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + self.dist.rank)
        self.step = 0
        self.train_seconds = 0.0  # wall-clock spent in training steps, over all resumes
        self.history: list[dict] = []

    # ---------------------------------------------------------------- state
    @property
    def state_path(self) -> Path:
        return self.output_dir / STATE_FILE

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "model": self._model_state(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "consumed": self.stream.consumed,
            "train_seconds": self.train_seconds,
            "config": asdict(self.config),
            "extra": {name: get() for name, (get, _) in self.extra_state.items()},
        }

    def _model_state(self) -> dict:
        """The module's state; with frozen parameters (a LoRA student) only what trains, plus buffers."""
        frozen = {name for name, p in self.module.named_parameters() if not p.requires_grad}
        return {k: v for k, v in self.module.state_dict().items() if k not in frozen}

    def save(self) -> None:
        """Write the full training state atomically (rank 0 only)."""
        if self.dist.rank == 0:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_path.with_suffix(".tmp")
            torch.save(self.state_dict(), tmp)
            os.replace(tmp, self.state_path)
            if self.on_save is not None:
                self.on_save(self, self.step)
        self.dist.barrier()

    def try_resume(self) -> bool:
        """Load ``train_state.pt`` if present; True if the run resumed."""
        if not self.state_path.exists():
            return False
        try:
            state = torch.load(self.state_path, map_location=self.device, weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
            raise RuntimeError(f"cannot resume from {self.state_path} ({type(err).__name__}); delete it to start over") from None
        frozen = {name for name, p in self.module.named_parameters() if not p.requires_grad}
        missing = set(self.module.state_dict()) - frozen - set(state["model"])
        if missing:
            raise RuntimeError(f"cannot resume from {self.state_path}: it lacks {sorted(missing)[:3]}; delete it to start over")
        self.module.load_state_dict(state["model"], strict=not frozen)
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.stream.skip_to(state["consumed"])
        self.step = state["step"]
        self.train_seconds = state.get("train_seconds", 0.0)
        for name, (_, set_) in self.extra_state.items():
            set_(state["extra"][name])
        return True

    # ---------------------------------------------------------------- loop
    def _log(self, record: dict) -> None:
        self.history.append(record)
        if self.dist.rank == 0:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with open(self.output_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def train_step(self) -> dict:
        cfg = self.config
        self.ddp_model.train()
        amp = autocast_dtype(cfg.precision, self.device)
        micro = cfg.batch_size // (cfg.grad_accum * self.dist.world_size)
        if micro < 1:
            raise ValueError(f"train.batch_size={cfg.batch_size} is smaller than grad_accum x world_size")
        total_loss, tokens = 0.0, 0
        self.optimizer.zero_grad(set_to_none=True)
        for i in range(cfg.grad_accum):
            batch = self.stream.next_batch(micro).to(self.device)
            with self.dist.no_sync(self.ddp_model, last=i == cfg.grad_accum - 1):
                with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    out = self.loss_fn(self.ddp_model, batch, self.generator)
                (out.loss / cfg.grad_accum).backward()
            total_loss += float(out.loss.detach()) / cfg.grad_accum
            tokens += batch.num_tokens
        total_loss = self.dist.all_mean(total_loss)  # the loss of the whole global batch
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip or float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.module)
        self.step += 1
        return {"loss": total_loss, "tokens": tokens * self.dist.world_size, "grad_norm": float(grad_norm)}

    def run(self) -> list[dict]:
        """Train until ``config.steps`` (resuming if a state exists); returns the log."""
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        resumed = self.try_resume()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.show_progress or self.dist.rank != 0,
                   desc="resumed" if resumed else "train", dynamic_ncols=True)
        window_tokens, window_start = 0, time.perf_counter()
        while self.step < cfg.steps:
            if self.on_step is not None:
                self.on_step(self, self.step)
            step_start = time.perf_counter()
            stats = self.train_step()
            self.train_seconds += time.perf_counter() - step_start
            window_tokens += stats["tokens"]
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                elapsed = time.perf_counter() - window_start
                record = {"step": self.step, "loss": stats["loss"], "grad_norm": stats["grad_norm"],
                          "lr": self.scheduler.get_last_lr()[0], "tokens_per_s": window_tokens / max(elapsed, 1e-9)}
                self._log(record)
                bar.set_postfix(loss=f"{stats['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
                window_tokens, window_start = 0, time.perf_counter()
            bar.update(1)
            if self.evaluate is not None and cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                self._log({"step": self.step, **self.evaluate(self.ema.model, self.step)})
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save()
        bar.close()
        self.stream.close()  # a WorkerStream's processes
        self.save()
        if self.evaluate is not None:
            self._log({"step": self.step, "final": True, **self.evaluate(self.ema.model, self.step)})
        return self.history
