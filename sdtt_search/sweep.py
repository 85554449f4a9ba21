"""Sweep best-of-N search over models x steps x samples (x early-stopping rounds x cascades).

    python -m sdtt_search.sweep models=[a,b] steps=[2,4] samples=[4,8] task=countdown limit=100
    python -m sdtt_search.sweep ... stop_rounds=[null,4]   # each point drawing all N and stopping early
    python -m sdtt_search.sweep ... stop_rounds=[1] fallbacks=[null,countdown-cd3-ar]   # alone and cascaded
    python -m sdtt_search.sweep ... strategies=[best_of_n,repair] repair.rounds=2   # plain and repaired
    python -m sdtt_search.sweep ... executor=ray ray.address=auto   # one Ray task per grid point

Each grid point is an ``sdtt_search.run`` output directory under ``output_dir``
(``<model>/steps<S>-n<N>``, ``-stop<R>`` with early stopping, ``-then-<fallback>`` for a
cascade), so rerunning the sweep resumes every grid point. A fallback (``sdtt_search.run
fallback.model``) applies only to the points that stop early.
Writes ``sweep.csv``, ``sweep.md`` (one row per grid point) and
``accuracy_vs_wallclock.png`` to ``output_dir``.
"""
from __future__ import annotations

import csv
import itertools
import re
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .checks import is_positive_int
from .cli import cli_main, compose
from .run_config import EXECUTORS, check_run_config
from .search.repair import STRATEGIES

COLUMNS = ("model", "steps", "samples", "stop_round", "fallback", "strategy", "samples_drawn", "pass@1", "maj@N", "verified@N",
           "confidence@N", "pass@N", "wall_s", "samples_per_s")


def _as_list(value, key: str) -> list:
    if value is None:
        return [None]
    items = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ValueError(f"{key}=[] is empty; give at least one value")
    return items


def _slug(model) -> str:
    name = "default" if model is None else Path(str(model)).name or str(model)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def grid(cfg: DictConfig) -> list[dict]:
    """The grid points: model, steps, samples, early-stopping round and the run's output directory."""
    if cfg.executor not in EXECUTORS:
        raise ValueError(f"executor={cfg.executor!r} is unknown; use one of {', '.join(EXECUTORS)}")
    models = _as_list(cfg.models, "models")
    steps = _as_list(cfg.steps, "steps")
    samples = _as_list(cfg.samples, "samples")
    for s in steps:
        if s is not None and not is_positive_int(s):
            raise ValueError(f"steps={s!r} must be a positive integer or null")
    for n in samples:
        if not is_positive_int(n):
            raise ValueError(f"samples={n!r} must be a positive integer")
    stops = _as_list(cfg.get("stop_rounds"), "stop_rounds")
    for r in stops:
        if r is not None and not is_positive_int(r):
            raise ValueError(f"stop_rounds={r!r} must be a positive integer or null (draw all N)")
    fallbacks = _as_list(cfg.get("fallbacks"), "fallbacks")
    if any(f is not None for f in fallbacks) and all(r is None for r in stops):
        raise ValueError("fallbacks cascade the points that stop early: give stop_rounds a round size too, "
                         "e.g. stop_rounds=[1]")
    strategies = _as_list(cfg.get("strategies", ["best_of_n"]), "strategies")
    for name in strategies:
        if name not in STRATEGIES:
            raise ValueError(f"strategies={name!r} is unknown; use one of {', '.join(STRATEGIES)}")
    slugs: dict = {}
    for i, m in enumerate(models):
        slug = _slug(m)
        slugs[i] = slug if slug not in slugs.values() else f"{slug}-{i}"
    out = Path(cfg.output_dir)
    return [
        {"model": m, "steps": s, "samples": n, "stop_round": r, "fallback": f, "strategy": g,
         "output_dir": str(out / slugs[i] / (f"steps{'default' if s is None else s}-n{n}"
                                             f"{'' if r is None else f'-stop{r}'}{'' if f is None else f'-then-{_slug(f)}'}"
                                             f"{'' if g == 'best_of_n' else f'-{g}'}"))}
        for (i, m), s, n, r, f, g in itertools.product(enumerate(models), steps, samples, stops, fallbacks, strategies)
        if f is None or r is not None  # a cascade passes on what a stopping search was not sure of
    ]


def run_config(cfg: DictConfig, point: dict, *, in_ray: bool = False) -> DictConfig:
    """``configs/run.yaml`` composed for one grid point (checked like ``sdtt_search.run``)."""
    run_cfg = compose("run", [f"task={cfg.task.name}"])
    run_cfg.task = OmegaConf.create(OmegaConf.to_container(cfg.task, resolve=True))
    for key in ("limit", "split", "seed", "device", "batch_size"):
        run_cfg[key] = cfg[key]
    run_cfg.model = point["model"]
    run_cfg.samples = point["samples"]
    run_cfg.stop_round = point.get("stop_round")
    run_cfg.stop_on = cfg.get("stop_on", "verified")
    run_cfg.stop_confidence = cfg.get("stop_confidence")
    run_cfg.stop_fill = cfg.get("stop_fill", False)
    run_cfg.fallback.model = point.get("fallback")
    run_cfg.fallback.samples = cfg.get("fallback_samples")
    run_cfg.fallback.round = cfg.get("fallback_round")
    run_cfg.strategy = point.get("strategy", "best_of_n")
    for strategy in ("repair", "smc", "order"):  # each strategy's options (repair.*, smc.*, order.*)
        for key, value in OmegaConf.to_container(cfg.get(strategy) or {}, resolve=True).items():
            if value is not None:
                run_cfg[strategy][key] = value
    run_cfg.sampler.steps = point["steps"]
    for key, value in OmegaConf.to_container(cfg.sampler, resolve=True).items():
        if value is not None:
            run_cfg.sampler[key] = value
    run_cfg.executor = "local"
    run_cfg.workers = 1
    run_cfg.output_dir = point["output_dir"]
    run_cfg.plot = bool(cfg.plot)
    run_cfg.progress = bool(cfg.progress) and not in_ray
    check_run_config(run_cfg)
    return run_cfg


def run_point(run_cfg: dict, threads: int | None = None) -> dict:
    """One grid point: ``sdtt_search.run.run`` on a plain-dict config (what a Ray task gets)."""
    from .run import run

    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return run(OmegaConf.create(run_cfg))


def _run_on_ray(cfg: DictConfig, configs: list[dict]) -> list[dict]:
    import ray
    from ray.exceptions import RayTaskError

    from .search import ray_cluster
    from .search.ray_executor import wait_one

    ray_cluster.connect(cfg.ray.address, dashboard=False, num_cpus=cfg.ray.num_cpus)
    try:
        task = ray.remote(num_cpus=cfg.ray.cpus_per_run, num_gpus=cfg.ray.gpus_per_run,
                          max_retries=cfg.ray.max_retries)(run_point)
        refs = [task.remote(c, cfg.ray.cpus_per_run) for c in configs]
        index = {ref: i for i, ref in enumerate(refs)}
        metrics: list = [None] * len(refs)
        pending = list(refs)
        while pending:
            ready = wait_one(pending, cfg.ray.get("stall_timeout_s"))  # a lost node: one line, never a hang
            pending = [ref for ref in pending if ref != ready[0]]
            i = index[ready[0]]
            try:
                metrics[i] = ray.get(ready[0])
            except RayTaskError as err:
                cause = err.as_instanceof_cause()
                message = " ".join(str(cause).split())[:300]
                raise RuntimeError(f"grid point {configs[i]['output_dir']} failed: {message}") from None
            print(f"[{len(refs) - len(pending)}/{len(refs)}] {configs[i]['output_dir']}", file=sys.stderr)
        return metrics
    finally:
        if ray_cluster.started_here():
            ray_cluster.shutdown()


def row(point: dict, metrics: dict) -> dict:
    """One line of the sweep table (N = the grid point's samples). A point that stopped
    early has no per-k curves: its maj@N / verified@N are the picks from the samples it
    drew (``report.summarise_stopped``), ``samples_drawn`` their mean per problem (over
    every stage of a cascade, ``report.summarise_cascade``)."""
    acc, n = metrics.get("accuracy", {}), point["samples"]
    stages = metrics.get("stages")
    stopped = "round_size" in metrics or stages is not None
    return {
        "model": metrics.get("model", point["model"]),
        "steps": metrics.get("steps", point["steps"]),
        "samples": n,
        "stop_round": stages[0]["round_size"] if stages else metrics.get("round_size"),
        "fallback": stages[1]["model"] if stages else None,
        # metrics.json has a repair or smc block
        "strategy": next((name for name in ("repair", "smc", "order") if name in metrics), "best_of_n"),
        "samples_drawn": metrics["samples_drawn"]["mean"] if stopped else float(n),
        "pass@1": acc.get("pass@1"),
        "maj@N": acc.get("majority") if stopped else acc.get(f"maj@{n}"),
        "verified@N": acc.get("verified") if stopped else acc.get(f"verified@{n}"),
        "confidence@N": acc.get(f"confidence@{n}"),
        "pass@N": acc.get(f"pass@{n}"),
        "wall_s": metrics.get("wall_s"),
        "samples_per_s": metrics.get("throughput", {}).get("samples_per_s"),
    }


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def format_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)


def plot_wallclock(rows: list[dict], path: Path, title: str = "") -> bool:
    """Best-of-N accuracy (verified@N where the task has a verifier, else maj@N) against wall-clock,
    one line per (model, steps) through its sample counts. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    metric = "verified@N" if any(r["verified@N"] is not None for r in rows) else "maj@N"
    fig, ax = plt.subplots(figsize=(6, 4))
    series: dict = {}
    for r in rows:
        series.setdefault((str(r["model"]), r["steps"], r.get("stop_round"), r.get("fallback")), []).append(r)
    for (model, steps, stop, fallback), points in series.items():
        points.sort(key=lambda r: r["samples"])
        ax.plot([max(r["wall_s"], 1e-3) for r in points], [r[metric] for r in points], marker="o",
                label=f"{_slug(model)} steps={steps}" + ("" if stop is None else f" stop={stop}")
                + ("" if fallback is None else f" then {_slug(fallback)}"))
        for r in points:
            ax.annotate(f"N={r['samples']}", (max(r["wall_s"], 1e-3), r[metric]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    ax.set_xscale("log")
    ax.set_xlabel("wall-clock (s)")
    ax.set_ylabel(metric.replace("N", "N (best of N)"))
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def sweep(cfg: DictConfig) -> list[dict]:
    """Run every grid point, write the combined table and plot; returns the rows."""
    points = grid(cfg)
    configs = [run_config(cfg, p, in_ray=cfg.executor == "ray") for p in points]
    if cfg.executor == "ray":
        plain = [OmegaConf.to_container(c, resolve=True) for c in configs]
        all_metrics = _run_on_ray(cfg, plain)
    else:
        all_metrics = []
        for i, c in enumerate(configs):
            print(f"[{i + 1}/{len(configs)}] {c.output_dir}", file=sys.stderr)
            all_metrics.append(run_point(OmegaConf.to_container(c, resolve=True)))
    rows = [row(p, m) for p, m in zip(points, all_metrics)]
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "sweep.csv")
    table = format_table(rows)
    (out / "sweep.md").write_text(table + "\n")
    if cfg.plot:
        plot_wallclock(rows, out / "accuracy_vs_wallclock.png", title=f"{cfg.task.name} (limit={cfg.limit})")
    print(table)
    print(f"sweep: {out / 'sweep.csv'}")
    return rows


def main(argv: list[str] | None = None) -> int:
    return cli_main(sweep, "sweep", argv)


if __name__ == "__main__":
    raise SystemExit(main())
