"""The command line: ``python -m benchmarks.frontier`` measures a run and writes its own
report into ``--out`` (``frontier.json``, ``frontier.png``, ``frontier.md``); ``--render``
re-renders a saved run with the current analysis. Only ratios within one run are comparable."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sdtt_search.cli import task_from_config
from sdtt_search.fingerprint import model_fingerprint
from sdtt_search.machine import describe

from .analysis import analyse
from .markdown import markdown, write_report
from .measure import interleaved_timing, latency_ks, latency_timing, measure_model
from .models import load_spec, same_task
from .plot import plot
from .store import load, reused_search, save, saved_accuracy

COMMAND = "python -m benchmarks.frontier"  # how the report says the run was made


def run(args: argparse.Namespace) -> dict:
    """Measure the models of ``args`` (one task), analyse, and write this run's own report
    into ``args.out``: ``frontier.json``, ``frontier.png`` and ``frontier.md``. Returns the
    report (per-problem lists kept)."""
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"task": args.task, "machine": describe(), "when": time.strftime("%Y-%m-%d"), "problems": args.problems,
              "samples": args.samples, "batches": args.batches, "search_batch": args.search_batch,
              "search_calls": args.search_calls,
              "repeats": args.repeats, "command": COMMAND + " " + " ".join(args.argv), "models": {},
              "split": args.split}
    started = time.perf_counter()
    reused = saved_accuracy(args.accuracy_from, args)
    hub_task = None
    if args.task_options is not None or args.task_path:  # for hub models, which record no task
        hub_task = {"name": args.task, "options": _options(args.task_options or []), "path": args.task_path}
    models, task = load_models(args.models, args.device, args.ar_backend, hub_task)
    problems = task.problems(args.split, limit=args.problems)
    for name, model in models.items():
        report["models"][name] = measure_one(name, model, args, task, problems, reused)
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
    save(report, out_dir)
    plot(report, out_dir / "frontier.png")
    write_report(text, report, out_dir)
    return report


def _options(items: list[str]) -> dict:
    """``key=value`` strings as task options (numbers read as numbers)."""
    out = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def load_models(specs: list[str], device: str, ar_backend: str, hub_task: dict | None = None) -> tuple[dict, object]:
    """({spec: model}, the task read from the first model's meta); a hub model (``hf:``,
    which records no task) takes ``hub_task`` (``--task`` with ``--task-options`` /
    ``--task-path``), so hub diffusion and AR models and zoo models of that task compare in
    one run; models of another task are refused (SystemExit)."""
    models, task, task_meta = {}, None, None
    for name in specs:
        model = load_spec(name, device, ar_backend)
        own = model.meta.get("task") or hub_task
        if own is None:
            raise SystemExit(f"{name} records no task: pass --task <name> --task-options key=value ... "
                             "(and --task-path for GSM8K) for hub models")
        if task is None:
            task_meta = own
            task = task_from_config(task_meta)
        elif not same_task(own, task_meta):
            raise SystemExit(f"{name} is a {model.meta.get('task')} model, the first model is {task_meta}: "
                             "compare models of one task")
        models[name] = model
    return models, task


def measure_one(name: str, model, args: argparse.Namespace, task, problems, reused: dict) -> dict:
    """One model's block of the report (``measure_model``), its accuracy run taken from
    ``reused`` (``--accuracy-from``) when saved for the same weights; prints its pass@1."""
    start = time.perf_counter()
    saved = reused_search(reused, name)
    fingerprint = model_fingerprint(name.partition(":")[0])
    if saved is not None and saved.get("fingerprint") not in (None, fingerprint):
        raise SystemExit(f"--accuracy-from: the saved accuracy run of {name} is of other weights (fingerprint "
                         f"{saved['fingerprint']}, this model's {fingerprint}); run without --accuracy-from")
    info = measure_model(model, name, args, task, problems, saved)
    info["search"]["fingerprint"] = fingerprint
    s = info["search"]
    print(f"{name}: pass@1 {s['pass@1']:.3f}, verified@{args.samples} {s['verified@N']:.3f} "
          f"({'from ' + ' / '.join(map(str, args.accuracy_from)) if saved else f'{time.perf_counter() - start:.0f} s'})",
          flush=True)
    return info


def render(path: Path) -> dict:
    """Re-render a saved run's tables (frontier.md and the plot, beside the json) with this
    version of the analysis; nothing is measured again."""
    saved = load(path)
    report = analyse(saved, len(saved["frontier"]))
    text = markdown(report)
    print(text)
    plot(report, path.with_name("frontier.png"))
    write_report(text, report, path.parent)
    return report


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=COMMAND, description=sys.modules[__package__].__doc__.splitlines()[0])
    p.add_argument("--render", type=Path, help="re-render the tables of a saved frontier.json (measures nothing)")
    p.add_argument("--task", help="a label for the report (the task is read from the first model); with "
                   "--task-options or --task-path, the task of hub models, which record none")
    p.add_argument("--task-options", nargs="*", default=None, help="hub models' task options, e.g. n=3")
    p.add_argument("--task-path", default=None, help="hub models' task data (e.g. a GSM8K test.jsonl)")
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
    p.add_argument("--out", default="runs/frontier")
    p.add_argument("--accuracy-from", type=Path, nargs="+", default=None,
                   help="reuse the accuracy runs of saved frontier.json files for the models they hold (same "
                        "problems, samples and split; seeded, so the same candidates; a model in several: the last "
                        "file's) and measure only the timings")
    args = p.parse_args(argv)
    if args.render is None and (not args.task or not args.models):
        p.error("--task and --models are required (or --render a saved frontier.json)")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: list[str] | None = None) -> dict:
    """``python -m benchmarks.frontier``: a run, or ``--render`` of a saved one."""
    args = parse(argv)
    return render(args.render) if args.render is not None else run(args)
