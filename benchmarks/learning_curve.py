"""Learning curves of twins: a diffusion model and its AR twin at equal training steps.

    python -m benchmarks.learning_curve runs/cd4-curve/mdlm-* runs/cd4-curve/ar-* \\
        --problems 64 --samples 16 --split validation

Each argument is a checkpoint directory (a snapshot of one of the twins' training runs);
its family (``kind``) and training steps come from its own metadata, so the twins pair up
by step. The two families were trained on the same stream with the same model size, batch
and steps (``distill.pretrain objective=mdlm|ar``): equal training compute per step.

With ``--out`` the rows are saved after each snapshot, and a later run with the same
problems, samples, split and seed reuses the snapshots already measured (add new
snapshots as training goes on).

Each snapshot is sampled as its family decodes (temperature 1, the same problems and
seeds): the AR twin left to right; the diffusion model in every order the library has
(``--decodings``): its ancestral sampler, and one token a step committed by the most
confident position first (``low_confidence``), by the largest margin between its two most
likely tokens (``margin``) or by the lowest entropy (``entropy``, Kim et al. 2025 "Train
for the worst, plan for the best"). Reported: pass@1 (the mean over samples) and
verified@k (a verifier's pick among k samples), the share of samples whose completed steps
the task's partial check accepts (partial credit, ``consistent_share``), the share of blank
cells filled right where the task scores it (Sudoku's ``cell_accuracy``), per step, and the
diffusion model's best decoding against the AR twin. Prints markdown naming the machine.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sdtt_search import Search
from sdtt_search.cli import task_from_config
from sdtt_search.loading import load_model
from sdtt_search.machine import describe
from sdtt_search.search.report import score_means
from sdtt_search.zoo import resolve_model_path

from .saved_run import save_run

ORDERS = ("low_confidence", "margin", "entropy")


def decodings(model, names: list[str]) -> dict[str, object]:
    """{name: SamplerConfig} of each decoding of ``names`` the model's family has."""
    if model.kind == "ar":
        return {"left to right": model.default_sampler().replace(temperature=1.0)}
    base = model.default_sampler().replace(temperature=1.0)
    out = {}
    for name in names:
        if name == "ancestral":
            out[name] = base
        elif name in ORDERS:  # one token a step, in the order the rule picks
            out[name] = base.replace(method="confidence", remasking=name, steps=model.gen_length, block_length=None,
                                     threshold=None)
        else:
            raise SystemExit(f"unknown decoding {name!r}: use ancestral or one of {', '.join(ORDERS)}")
    return out


def objective(meta: dict, kind: str) -> str:
    """The training objective a checkpoint records (``distill.pretrain objective=``); older
    diffusion checkpoints that do not say were trained with ``mdlm``."""
    return str(meta.get("objective") or ("ar" if kind == "ar" else "mdlm"))


def consistent_share(task, problems, results) -> float:
    """Share of samples whose completed steps the task's partial check accepts, the last
    step left open (``Task.partial_check`` on the text's characters, not ended): partial
    credit that moves before pass@1 does (Countdown: every equation but the last exact and
    on numbers still available)."""
    by_id = {p.id: p for p in problems}
    verdicts = [not task.partial_check(by_id[r.id], list(c.text), False).violated
                for r in results for c in r.candidates]
    return sum(verdicts) / max(len(verdicts), 1)


def measure(path: str, task, problems, samples: int, names: list[str], seed: int) -> list[dict]:
    model = load_model(path, device="cpu", ar_backend="transformers")
    step = int(model.meta.get("train_steps", 0))
    rows = []
    for name, sampler in decodings(model, names).items():
        start = time.perf_counter()
        result = Search(model, task, sampler, batch_size=256, seed=seed).best_of_n(problems, samples)
        wall = time.perf_counter() - start
        acc = result.metrics["accuracy"]
        rows.append({"path": path, "kind": model.kind, "objective": objective(model.meta, model.kind), "step": step,
                     "decoding": name, "pass@1": acc["pass@1"],
                     f"verified@{samples}": acc[f"verified@{samples}"],
                     "consistent": consistent_share(task, problems, result.problems),
                     "scores": score_means(task, problems, result.problems),
                     "ms_per_sample": 1e3 * wall / (len(problems) * samples)})
        print(f"{path} step {step} {name}: pass@1 {acc['pass@1']:.3f} verified@{samples} "
              f"{acc[f'verified@{samples}']:.3f} consistent {rows[-1]['consistent']:.3f} ({wall:.0f} s)", flush=True)
    return rows


def markdown(rows: list[dict], samples: int, problems: int, split: str, task: str, machine: str) -> str:
    v = f"verified@{samples}"
    cells = any("cell_accuracy" in r.get("scores", {}) for r in rows)  # Sudoku: blank cells equal to the solution
    lines = [f"{task}: {problems} {split} problems x {samples} samples, temperature 1; {machine}", "",
             "| step | objective | decoding | pass@1 | " + v + " | steps consistent |" + (" cells right |" if cells else "")
             + " ms/sample |", "|---|---|---|---|---|---|---|" + ("---|" if cells else "")]
    for r in sorted(rows, key=lambda r: (r["step"], r["kind"] != "diffusion", r["objective"], r["decoding"])):
        cell = f" {r.get('scores', {}).get('cell_accuracy', float('nan')):.3f} |" if cells else ""
        lines.append(f"| {r['step']} | {r['objective']} | {r['decoding']} | {r['pass@1']:.3f} | {r[v]:.3f} | "
                     f"{r['consistent']:.3f} |{cell} {r['ms_per_sample']:.1f} |")
    lines += ["", "Per step, the diffusion model's best decoding (by " + v + ") against the AR twin", "",
              "| step | diffusion (best decoding) | " + v + " | AR | " + v + " | ratio |", "|---|---|---|---|---|---|"]
    for step in sorted({r["step"] for r in rows}):
        diff = max((r for r in rows if r["step"] == step and r["kind"] == "diffusion"), key=lambda r: r[v],
                   default=None)
        ar = next((r for r in rows if r["step"] == step and r["kind"] == "ar"), None)
        if diff and ar:
            ratio = f"{diff[v] / ar[v]:.2f}" if ar[v] > 0 else ("-" if diff[v] == 0 else "inf")
            lines.append(f"| {step} | {diff['objective']}, {diff['decoding']} | {diff[v]:.3f} | left to right | "
                         f"{ar[v]:.3f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", help="snapshot directories of the twins' runs (or zoo names)")
    p.add_argument("--problems", type=int, default=64)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--split", default="validation")
    p.add_argument("--decodings", nargs="+", default=["ancestral", *ORDERS])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    first = load_model(args.checkpoints[0], device="cpu", ar_backend="transformers")
    task = task_from_config(first.meta["task"])
    if not task.has_verifier:
        raise SystemExit(f"{task.name} has no verifier: verified@k needs one")
    problems = task.problems(args.split, limit=args.problems)
    setting = {"problems": len(problems), "samples": args.samples, "split": args.split, "seed": args.seed}
    done = saved_rows(args.out, setting)
    rows = []
    for path in args.checkpoints:
        kept = [r for r in done if r["path"] == path]
        rows += kept or measure(path, task, problems, args.samples, args.decodings, args.seed)
        if args.out:  # written as it goes: a stopped run resumes at the next snapshot
            save_run(args.out, "learning_curve", markdown(rows, args.samples, len(problems), args.split, task.name,
                                                          describe()), {"setting": setting, "rows": rows})
    report = markdown(rows, args.samples, len(problems), args.split, task.name, describe())
    print(report)
    return rows


def saved_rows(out: str | None, setting: dict) -> list[dict]:
    """The rows an earlier run with the same setting saved under ``out`` (none otherwise)."""
    path = Path(out or "") / "learning_curve.json"
    if not out or not path.is_file():
        return []
    saved = json.loads(path.read_text())
    if saved.get("setting") != setting:
        return []
    return [r if "objective" in r else {**r, "objective": objective(recorded_meta(r["path"]), r["kind"])}
            for r in saved["rows"]]


def recorded_meta(spec: str) -> dict:
    """The ``meta`` a checkpoint directory (or zoo name) records, read without loading it."""
    try:
        directory = resolve_model_path(spec)
    except ValueError:
        return {}
    for name in ("sdtt_search.json", "config.json"):
        if (directory / name).is_file():
            meta = json.loads((directory / name).read_text()).get("meta")
            if meta:
                return meta
    return {}


if __name__ == "__main__":
    main()
