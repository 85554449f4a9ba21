"""Best-of-N search from the command line.

    python -m sdtt_search.run task=gsm8k samples=256
    python -m sdtt_search.run task=countdown model=countdown-cd3-num-sdtt-4 samples=64 limit=100
    python -m sdtt_search.run task=countdown executor=ray workers=4 ray.address=auto
    python -m sdtt_search.run task=countdown samples=64 stop_round=4   # verify-and-stop
    python -m sdtt_search.run task=sudoku samples=16 strategy=repair repair.rounds=2   # repair failing candidates
    python -m sdtt_search.run task=gsm8k samples=64 stop_round=8 stop_on=majority   # stop once maj@64 is settled
    python -m sdtt_search.run task=countdown samples=4 stop_round=1 fallback.model=countdown-cd3-ar \
        fallback.samples=64 fallback.round=32   # a cascade: the AR twin only where the student found nothing

Writes ``results.jsonl`` (one line per problem, as problems finish),
``metrics.json`` and ``accuracy_vs_samples.png`` to ``output_dir``; rerunning
with the same ``output_dir`` resumes.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from .cli import cli_main, task_from_config
from .fingerprint import model_fingerprint
from .hf.options import load_options_from_config
from .loading import load_model
from .machine import resolve_device
from .run_config import (check_run_config, fallback_stage, search_strategy, stop_rule,
                         strategy_options, strategy_record)
from .sampling_config import SamplerConfig, with_overrides
from .search.engine import Search
from .search.cascade import Cascade, Stage
from .search.particles import summarise_particles
from .search.repair import summarise_repair
from .search.report import (format_summary, plot_accuracy, score_means, summarise, summarise_cascade,
                            summarise_stopped)
from .search.store import ResultStore
from .zoo import default_model_for


def _check_model_task(model, task, cfg: DictConfig) -> None:
    """A model trained for another task is an error; other task options only warn."""
    trained = model.meta.get("task") or {}
    if not isinstance(trained, dict) or not isinstance(trained.get("options", {}), (dict, type(None))):
        raise ValueError(f"model {model.name}: its meta.task must be a mapping like "
                         f"{{'name': 'countdown', 'options': {{'n': 3}}}}, got {trained!r:.80}; fix \"meta\" in its "
                         "config.json")
    if trained.get("name") and trained["name"] != task.name:
        raise ValueError(f"model {model.name} was trained for task {trained['name']!r}, not {task.name!r}; "
                         f"pass a {task.name} model with model=")
    asked = OmegaConf.to_container(cfg.task.options, resolve=True) if cfg.task.get("options") else {}
    if trained.get("options") is not None and dict(trained["options"]) != dict(asked or {}):
        print(f"warning: model {model.name} was trained with task options {trained['options']}, "
              f"this run uses {asked}", file=sys.stderr)


def sampler_from(cfg: DictConfig, model, key: str = "sampler") -> SamplerConfig:
    """The model's default sampler, overridden by every non-null ``sampler.*`` value
    (``key``: the config node of the overrides, e.g. ``fallback.sampler``), blocks fitted
    to the steps as ``sampling_config.with_overrides`` says."""
    base = model.default_sampler()
    node = OmegaConf.select(cfg, key)
    overrides = OmegaConf.to_container(node, resolve=True) if node else {}
    try:
        return with_overrides(base, overrides, gen_length=getattr(model, "gen_length", 0))
    except ValueError as err:  # name the node the bad value came from (fallback.sampler.x, not sampler.x)
        text = str(err)
        raise ValueError(key + text.removeprefix("sampler") if text.startswith("sampler.") else text) from None


@dataclass
class RunPlan:
    """Everything a run needs, loaded and checked before any problem is searched."""

    task: object
    model_name: str
    model: object
    sampler: SamplerConfig
    stop: object | None  # search.stopping.StopRule
    strategy: str  # best_of_n | repair | smc
    strategy_options: object | None  # search.repair.RepairConfig, search.particles.ParticleConfig or None
    fallback: dict | None  # the cascade's second stage (run_config.fallback_stage), sampler as a dict
    problems: list
    run_config: dict  # what results.jsonl was made with (written to run_config.json, compared on resume)
    store: ResultStore
    search: Search
    cascade: Cascade | None
    device: str
    load_options: dict


def plan_run(cfg: DictConfig) -> RunPlan:
    """Check the options, load the model(s) and open the output directory (resuming it)."""
    check_run_config(cfg)
    task = task_from_config(cfg.task)
    stop = stop_rule(cfg)
    if stop is not None:
        stop.check(task)
    model_name = cfg.model or default_model_for(task.name)
    ray_gpus = cfg.executor == "ray" and str(cfg.device).startswith("cuda")  # the workers' GPUs count, not the driver's
    device = str(cfg.device) if ray_gpus else str(resolve_device(cfg.device))
    load_options = {"ar_backend": cfg.ar_backend}
    hf_model = str(model_name).startswith("hf:")
    if hf_model:  # Hugging Face diffusion models: trust_remote_code, family, dtype, hf.* (sdtt_search.hf.options)
        load_options.update(load_options_from_config(cfg, task.name))
    # On the Ray driver an hf: model is only described (device=meta); each worker loads its own replica.
    driver_device = ("meta" if hf_model else "cpu") if cfg.executor == "ray" else device
    model = load_model(model_name, device=driver_device, **load_options)
    _check_model_task(model, task, cfg)
    strategy, options = strategy_options(cfg)
    sampler = sampler_from(cfg, model)
    fallback = fallback_stage(cfg)
    fallback_model = None
    if fallback is not None:  # the cascade's second model, loaded (and checked) before anything runs
        fallback_model = load_model(fallback["model"], device=driver_device, **load_options)
        _check_model_task(fallback_model, task, cfg)
        fallback["sampler"] = sampler_from(cfg, fallback_model, "fallback.sampler").to_dict()
    problems = task.problems(split=cfg.split, limit=cfg.limit)
    fingerprints = {"model_fingerprint": model_fingerprint(model_name)}
    if fallback is not None:
        fingerprints["fallback_fingerprint"] = model_fingerprint(fallback["model"])
    run_config = {
        **fingerprints,
        "task": OmegaConf.to_container(cfg.task, resolve=True), "model": str(model_name), "samples": cfg.samples,
        "seed": cfg.seed, "split": cfg.split, "sampler": sampler.to_dict(), "stop": None if stop is None else stop.to_dict(),
        "fallback": fallback,
    }
    record = strategy_record(cfg)
    if record is not None:  # recorded only when not best_of_n: a plain run's record is unchanged
        run_config["strategy"] = record
    temporal = bool(cfg.get("temporal", False))
    if temporal:  # results lines then hold each candidate's trail
        run_config["temporal"] = True
    store = ResultStore(cfg.output_dir, run_config,
                        resume_keys=["task", "model", "samples", "seed", "split", "sampler", "stop", "fallback", "temporal",
                                     "strategy", *fingerprints])
    search = Search(model, task, sampler, batch_size=cfg.batch_size, seed=cfg.seed, strategy=strategy,
                    temporal=temporal, **({strategy: options} if options is not None else {}))
    cascade = None
    if fallback is not None:
        cascade = Cascade([Stage(search, cfg.samples, stop.round_size, stop.on, stop.confidence, stop.fill),
                           Stage(Search(fallback_model, task, SamplerConfig.from_dict(fallback["sampler"]),
                                        batch_size=cfg.batch_size, seed=fallback["seed"]),
                                 fallback["samples"], fallback["round_size"], stop.on, stop.confidence, stop.fill)])
    return RunPlan(task, str(model_name), model, sampler, stop, strategy, options, fallback, problems, run_config, store, search,
                   cascade, device, load_options)


def search_problems(plan: RunPlan, cfg: DictConfig, todo: list, on_result: Callable) -> None:
    """Search ``todo`` on the configured executor, calling ``on_result`` as each problem finishes."""
    if cfg.executor == "local":
        results = (plan.search.iter_results(todo, cfg.samples, stop=plan.stop) if plan.cascade is None
                   else plan.cascade.iter_results(todo))
        for result in results:
            on_result(result)
        return
    from .search.ray_executor import run_cascade_on_ray, run_on_ray

    search_args = {"model": plan.model_name, "task": plan.run_config["task"], "sampler": plan.sampler.to_dict(),
                   "batch_size": cfg.batch_size, "seed": cfg.seed, "device": plan.device,
                   "load_options": plan.load_options}
    search_args |= search_strategy(plan.strategy, plan.strategy_options)
    if plan.search.temporal:
        search_args["temporal"] = True
    if plan.cascade is None:
        run_on_ray(search_args=search_args, problems=todo, n=cfg.samples, workers=cfg.workers, ray_cfg=cfg.ray,
                   on_result=on_result, stop=plan.stop)
        return
    fallback, stop = plan.fallback, plan.stop
    second = {**search_args, "model": fallback["model"], "sampler": fallback["sampler"], "seed": fallback["seed"],
              **search_strategy("best_of_n", None), "repair": None, "smc": None,
              "order": None}  # the strategy is the first model's
    rule = {"on": stop.on, "confidence": stop.confidence}
    run_cascade_on_ray(stages=[{"search_args": search_args, "samples": cfg.samples, "round_size": stop.round_size, **rule},
                               {"search_args": second, "samples": fallback["samples"],
                                "round_size": fallback["round_size"], **rule}],
                       problems=todo, workers=cfg.workers, ray_cfg=cfg.ray, on_result=on_result)


def write_outputs(plan: RunPlan, cfg: DictConfig) -> dict:
    """metrics.json (and the plot) from every problem's stored result; prints the summary."""
    task, sampler, stop, store = plan.task, plan.sampler, plan.stop, plan.store
    results = store.ordered([p.id for p in plan.problems])
    model = plan.model
    metrics = {
        "task": task.name, "model": plan.model_name, "kind": model.kind, "steps": sampler.steps,
        "backend": getattr(model, "backend_name", "sdtt-search"),
        "sampler": sampler.to_dict(), "executor": cfg.executor, "workers": cfg.workers if cfg.executor == "ray" else 1,
        "device": plan.device,
        **({"network": model.meta["network"]} if "network" in (getattr(model, "meta", None) or {}) else {}),
        **(summarise(results, cfg.samples, has_verifier=task.has_verifier, wall_s=store.wall_s,
                     first_k=sampler.stratify > 0) if stop is None
           else summarise_stopped(results, cfg.samples, stop, task.has_verifier, wall_s=store.wall_s)
           if plan.cascade is None
           else summarise_cascade(results, plan.cascade.describe(), task.has_verifier, wall_s=store.wall_s)),
    }
    if plan.strategy == "repair":
        metrics["repair"] = summarise_repair(results)
    if plan.strategy == "smc":
        metrics["smc"] = summarise_particles(results)
    if plan.strategy == "order":
        metrics["order"] = plan.strategy_options.to_dict()
    scores = score_means(task, plan.problems, results)
    if scores:  # GSM8K: lm-eval's strict / flexible; Sudoku: matches_reference, cell_accuracy
        metrics["scores"] = scores
    out = Path(cfg.output_dir)
    try:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    except OSError as err:
        raise RuntimeError(f"cannot write {out / 'metrics.json'} ({err.strerror or err}); results.jsonl is complete: "
                           "fix it and rerun to write the metrics") from None
    written = [out / "results.jsonl", out / "metrics.json"]
    if cfg.plot and stop is None:  # a stopped run has no per-k curves to plot
        if plot_accuracy(metrics, out / "accuracy_vs_samples.png"):
            written.append(out / "accuracy_vs_samples.png")
        else:
            print("note: no plot: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
    print(f"{plan.model_name} on {task.name} ({cfg.split} split, {metrics['problems']} problems x {cfg.samples} "
          f"samples, {sampler.method} sampler, {sampler.steps} steps)\n")
    print(format_summary(metrics))
    print("\nwritten: " + ", ".join(str(path) for path in written))
    return metrics


def run(cfg: DictConfig) -> dict:
    """Run the search as configured: plan (load, check, resume), search what is not done
    yet (each result written as it finishes), write the metrics; returns metrics.json's content."""
    plan = plan_run(cfg)
    problems, store = plan.problems, plan.store
    todo = [p for p in problems if not store.done(p.id)]
    # on a terminal the bar redraws in place; into a file or a pipe, at most a line every 30 s
    bar = tqdm(total=len(problems), initial=len(problems) - len(todo), desc=f"{plan.task.name} x{cfg.samples}",
               unit="problem", disable=not cfg.progress, dynamic_ncols=True,
               mininterval=0.1 if sys.stderr.isatty() else 30.0)
    if store.resumed:
        print(f"resuming {cfg.output_dir}: {len(problems) - len(todo)} of {len(problems)} problems already done",
              file=sys.stderr)
    start = time.perf_counter()
    store.start_clock()
    done_samples = 0

    def on_result(result) -> None:
        nonlocal done_samples
        store.add(result)
        done_samples += len(result.candidates)
        bar.update(1)
        bar.set_postfix(samples_s=f"{done_samples / max(time.perf_counter() - start, 1e-9):.1f}", refresh=False)

    if todo:
        search_problems(plan, cfg, todo, on_result)
    bar.close()
    store.stop_clock()
    return write_outputs(plan, cfg)


def main(argv: list[str] | None = None) -> int:
    return cli_main(run, "run", argv)


if __name__ == "__main__":
    raise SystemExit(main())
