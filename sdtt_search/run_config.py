"""Checks and derived settings of a run's config (``configs/run.yaml``), shared by
``sdtt_search.run`` and ``sdtt_search.sweep`` (which checks every grid point's config
before running any)."""
from __future__ import annotations

from omegaconf import DictConfig

from .checks import is_positive_int
from .search.engine import check_samples
from .search.order_search import OrderConfig
from .search.particles import ParticleConfig
from .search.repair import RepairConfig, check_strategy
from .search.stopping import STOP_ON, StopRule

EXECUTORS = ("local", "ray")


def check_run_config(cfg: DictConfig) -> None:
    """One-line errors for a bad ``configs/run.yaml`` composition (counts, seed, executor,
    stop rule, fallback), before any task or model is loaded."""
    check_samples(cfg.samples)
    if cfg.limit is not None and (not is_positive_int(cfg.limit)):
        raise ValueError(f"limit={cfg.limit!r} must be a positive integer, or null for every problem")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise ValueError(f"seed={cfg.seed!r} must be an integer")
    if cfg.executor not in EXECUTORS:
        raise ValueError(f"executor={cfg.executor!r} is unknown; use one of {', '.join(EXECUTORS)}")
    if not isinstance(cfg.workers, int) or cfg.workers < 1:
        raise ValueError(f"workers={cfg.workers!r} must be a positive integer")
    if not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise ValueError(f"batch_size={cfg.batch_size!r} must be a positive integer")
    strategy_options(cfg)  # an unknown strategy or a bad repair.* / smc.* fails here too
    stop = stop_rule(cfg)  # a malformed stopping rule fails here, before any loading
    fallback = cfg.get("fallback") or {}
    if fallback.get("model") is None:
        return
    if stop is None:
        raise ValueError("fallback.model runs a cascade, which passes on the problems the first model is not sure "
                         "of: set stop_round (stop_on=verified, or stop_on=majority with stop_confidence)")
    if stop.on == "majority" and stop.confidence is None:
        raise ValueError("a cascade on the majority needs stop_confidence (e.g. 0.9): a problem goes on to "
                         "fallback.model when its majority is not that sure")
    for key in ("samples", "round"):
        value = fallback.get(key)
        if value is not None and not is_positive_int(value):
            raise ValueError(f"fallback.{key}={value!r} must be a positive integer or null")


def stop_rule(cfg: DictConfig) -> StopRule | None:
    """The run's early-stopping rule (``stop_round``, ``stop_on``, ``stop_confidence``,
    ``stop_fill``), None to draw all N."""
    if cfg.get("stop_round") is None:
        if cfg.get("stop_on", "verified") not in STOP_ON:
            raise ValueError(f"stop_on={cfg.stop_on!r} is unknown; use one of {', '.join(STOP_ON)}")
        return None
    return StopRule(cfg.stop_round, cfg.get("stop_on", "verified"), cfg.get("stop_confidence"),
                    cfg.get("stop_fill", False))


def fallback_stage(cfg: DictConfig) -> dict | None:
    """The cascade's second stage (``fallback.*``, nulls filled from ``samples`` and
    ``stop_round``; the same ``stop_on`` / ``stop_confidence``; its seed is ``seed + 1``),
    None without ``fallback.model``."""
    fallback = cfg.get("fallback") or {}
    if fallback.get("model") is None:
        return None
    return {"model": str(fallback.model), "samples": fallback.get("samples") or cfg.samples,
            "round_size": fallback.get("round") or cfg.stop_round, "seed": cfg.seed + 1}


#: the options of each strategy that has some: ``repair.*`` and ``smc.*`` in configs/run.yaml
STRATEGY_OPTIONS = {"repair": RepairConfig, "smc": ParticleConfig, "order": OrderConfig}


def strategy_options(cfg: DictConfig) -> tuple[str, RepairConfig | ParticleConfig | OrderConfig | None]:
    """The run's strategy and its options (``repair.*``, ``smc.*``, ``order.*``; None for
    best_of_n)."""
    strategy = cfg.get("strategy", "best_of_n")
    check_strategy(strategy)
    if strategy not in STRATEGY_OPTIONS:
        return strategy, None
    options = STRATEGY_OPTIONS[strategy]
    node = cfg.get(strategy) or {}
    known = tuple(options.__dataclass_fields__)
    unknown = sorted(set(node) - set(known))
    if unknown:
        raise ValueError(f"{strategy}.{unknown[0]} is not a {strategy} option; use "
                         + ", ".join(f"{strategy}.{key}" for key in known))
    return strategy, options(**{key: node[key] for key in node})


def search_strategy(strategy: str, options: RepairConfig | ParticleConfig | OrderConfig | None) -> dict:
    """``Search``'s keyword arguments for a strategy and its options (JSON-safe, as the Ray
    workers take them: ``{"strategy": "smc", "smc": {...}}``)."""
    return {"strategy": strategy, **({strategy: options.to_dict()} if options is not None else {})}


def strategy_record(cfg: DictConfig) -> dict | None:
    """What run_config.json records of the strategy (a resume with another one is refused):
    None for best_of_n (so a plain run's record is what it always was)."""
    strategy, options = strategy_options(cfg)
    return None if strategy == "best_of_n" else {"name": strategy, **(options.to_dict() if options else {})}
