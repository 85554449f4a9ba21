"""``python -m sdtt_search.sweep`` (local executor) on a tiny grid."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from sdtt_search import sweep as sweep_module
from sdtt_search.cli import compose
from sdtt_search.search.engine import Search
from search_fixtures import tiny_ckpt  # noqa: F401 - pytest fixture


def _args(model, out, *extra):
    return [f"models=[{model}]", "steps=[2,4]", "samples=[2,4]", "task=countdown", "limit=3", "executor=local",
            "device=cpu", "progress=false", f"output_dir={out}", *extra]


def _read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _expected_row(metrics: dict) -> dict:
    """A sweep line as it should read from its grid point's metrics.json (N = its samples; a
    cascade's metrics.json counts every stage's, so N is its first stage's): a point drawing
    all N reports the size-N curves, a stopped point or a cascade the picks of the samples
    it drew (accuracy.majority / .verified) and their mean count."""
    stages = metrics.get("stages")
    acc, n = metrics["accuracy"], stages[0]["samples"] if stages else metrics["samples"]
    stopped = "round_size" in metrics or stages is not None
    return {
        "steps": metrics.get("steps"),
        "samples": n,
        "stop_round": stages[0]["round_size"] if stages else metrics.get("round_size"),
        "fallback": stages[1]["model"] if stages else None,
        "strategy": "repair" if "repair" in metrics else "best_of_n",
        "samples_drawn": metrics["samples_drawn"]["mean"] if stopped else float(n),
        "pass@1": None if stopped else acc["pass@1"],
        "maj@N": acc["majority"] if stopped else acc[f"maj@{n}"],
        "verified@N": acc.get("verified") if stopped else acc.get(f"verified@{n}"),
        "confidence@N": None if stopped else acc[f"confidence@{n}"],
        "pass@N": None if stopped else acc[f"pass@{n}"],
        "wall_s": metrics["wall_s"],
        "samples_per_s": metrics["throughput"]["samples_per_s"],
    }


def _assert_rows_are_the_runs(rows: list[dict], run_dirs: list[Path]) -> None:
    """Every number of every sweep.csv line is its run's metrics.json value (floats round-trip
    exactly through the CSV; None is an empty cell)."""
    assert len(rows) == len(run_dirs)
    for r, run_dir in zip(rows, run_dirs):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        for key, want in _expected_row(metrics).items():
            got = r[key]
            if want is None:
                assert got == "", (run_dir.name, key, got)
            elif isinstance(want, (int, float)) and not isinstance(want, bool):
                assert float(got) == float(want), (run_dir.name, key, got, want)
            else:
                assert got == str(want), (run_dir.name, key, got, want)


def test_sweep_runs_every_grid_point_and_resumes(tiny_ckpt, tmp_path, monkeypatch, capsys):  # noqa: F811
    assert sweep_module.main(_args(tiny_ckpt, tmp_path)) == 0
    with open(tmp_path / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(sweep_module.COLUMNS)
    assert [(r["model"], r["steps"], r["samples"]) for r in rows] == [
        (tiny_ckpt, s, n) for s in ("2", "4") for n in ("2", "4")]
    for r in rows:
        for key in ("pass@1", "maj@N", "verified@N", "confidence@N", "pass@N", "wall_s", "samples_per_s"):
            float(r[key])
        run_dir = tmp_path / Path(tiny_ckpt).name / f"steps{r['steps']}-n{r['samples']}"
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert (metrics["steps"], metrics["samples"], metrics["problems"]) == (int(r["steps"]), int(r["samples"]), 3)
        assert len((run_dir / "results.jsonl").read_text().splitlines()) == 3
    _assert_rows_are_the_runs(rows, [tmp_path / Path(tiny_ckpt).name / f"steps{r['steps']}-n{r['samples']}"
                                     for r in rows])
    md = (tmp_path / "sweep.md").read_text().splitlines()
    assert md[0].startswith("| model | steps | samples | stop_round | fallback | strategy | samples_drawn | pass@1 | maj@N") \
        and len(md) == 2 + 4
    assert {r["strategy"] for r in rows} == {"best_of_n"}
    assert (tmp_path / "accuracy_vs_wallclock.png").read_bytes()[:4] == b"\x89PNG"
    assert "| model | steps |" in capsys.readouterr().out

    # a rerun resumes every grid point: nothing is sampled again and the accuracies are unchanged
    def fail(*args, **kwargs):
        raise AssertionError("a finished grid point was sampled again")

    monkeypatch.setattr(Search, "generate_problems", fail)
    assert sweep_module.main(_args(tiny_ckpt, tmp_path, "plot=false")) == 0
    with open(tmp_path / "sweep.csv") as f:
        again = list(csv.DictReader(f))
    drop = ("wall_s", "samples_per_s")  # wall-clock accumulates across reruns
    assert [{k: v for k, v in r.items() if k not in drop} for r in again] == \
        [{k: v for k, v in r.items() if k not in drop} for r in rows]


def test_a_sweep_compares_drawing_all_n_with_stopping_early(tmp_path):
    # a zoo Sudoku student whose samples mostly verify: the stopped points draw fewer samples, same accuracy
    args = ["models=[sudoku4-sdtt-2]", "steps=[null]", "samples=[8]", "stop_rounds=[null,2]", "task=sudoku",
            "limit=6", "executor=local", "device=cpu", "progress=false", "plot=false", f"output_dir={tmp_path}"]
    assert sweep_module.main(args) == 0
    with open(tmp_path / "sweep.csv") as f:
        full, stopped = list(csv.DictReader(f))
    assert (full["stop_round"], stopped["stop_round"]) == ("", "2")
    assert float(full["samples_drawn"]) == 8 and float(stopped["samples_drawn"]) < 8
    assert float(stopped["verified@N"]) == float(full["verified@N"])  # stopping only where a verified answer is in hand
    assert stopped["pass@1"] == "" and (tmp_path / "sudoku4-sdtt-2" / "stepsdefault-n8-stop2" / "metrics.json").exists()
    runs = [tmp_path / "sudoku4-sdtt-2" / d for d in ("stepsdefault-n8", "stepsdefault-n8-stop2")]
    _assert_rows_are_the_runs([full, stopped], runs)
    # the full point's columns recomputed from its candidates (results.jsonl): pass@1 the mean
    # share of correct samples, pass@N and verified@N (Sudoku's verifier is exact) the share
    # of problems with a correct one among the N
    results = [json.loads(line) for line in (runs[0] / "results.jsonl").read_text().splitlines()]
    assert len(results) == 6 and all(len(p["candidates"]) == 8 for p in results)
    correct = [[c["correct"] for c in p["candidates"]] for p in results]
    pass1 = sum(sum(c) / len(c) for c in correct) / len(correct)
    pass_n = sum(any(c) for c in correct) / len(correct)
    assert math.isclose(float(full["pass@1"]), pass1, rel_tol=1e-9)
    assert math.isclose(float(full["pass@N"]), pass_n, rel_tol=1e-9)
    assert math.isclose(float(full["verified@N"]), pass_n, rel_tol=1e-9)
    # this run tells the columns apart: a column written from another metric fails above
    assert len({full["pass@1"], full["maj@N"], full["pass@N"]}) == 3


def test_a_sweep_compares_a_model_alone_with_its_cascade(tmp_path):
    args = ["models=[sudoku4-sdtt-2]", "steps=[null]", "samples=[1]", "stop_rounds=[null,1]",
            "fallbacks=[null,sudoku4-ar]", "fallback_samples=4", "fallback_round=2", "task=sudoku", "limit=12",
            "executor=local", "device=cpu", "progress=false", "plot=false", f"output_dir={tmp_path}"]
    assert sweep_module.main(args) == 0
    with open(tmp_path / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    # drawing all N has no cascade: three points, not four
    assert [(r["stop_round"], r["fallback"]) for r in rows] == [("", ""), ("1", ""), ("1", "sudoku4-ar")]
    alone, cascade = rows[1], rows[2]
    assert float(alone["samples_drawn"]) == 1 and float(cascade["samples_drawn"]) > 1  # some problems went on
    assert float(cascade["verified@N"]) > float(alone["verified@N"])
    assert (tmp_path / "sudoku4-sdtt-2" / "stepsdefault-n1-stop1-then-sudoku4-ar" / "metrics.json").exists()
    _assert_rows_are_the_runs(rows, [tmp_path / "sudoku4-sdtt-2" / d for d in
                                     ("stepsdefault-n1", "stepsdefault-n1-stop1", "stepsdefault-n1-stop1-then-sudoku4-ar")])


def test_every_sweep_column_is_its_own_metric(tmp_path, monkeypatch):
    """Grid points whose metrics are all different numbers (a stand-in for
    ``sdtt_search.run``, writing metrics.json like it): each CSV and Markdown cell holds
    the metric its column names, for points drawing all N, stopping early and cascading."""
    def fake_run_point(run_cfg: dict, threads=None) -> dict:
        index = len(list(tmp_path.rglob("metrics.json")))
        n, stop, fallback = run_cfg["samples"], run_cfg["stop_round"], run_cfg["fallback"]["model"]
        base = 0.01 * (index + 1)
        metrics = {"model": run_cfg["model"], "steps": run_cfg["sampler"]["steps"], "samples": n,
                   "wall_s": 100.0 + index, "throughput": {"samples_per_s": 200.0 + index}}
        if stop is None:
            ks = sorted({1, 2, n})
            metrics["accuracy"] = {f"{m}@{k}": base + 0.1 * i + 0.001 * k
                                   for i, m in enumerate(("pass", "maj", "verified", "confidence")) for k in ks}
        else:
            metrics["accuracy"] = {"majority": base + 0.5, "verified": base + 0.6}
            metrics["samples_drawn"] = {"mean": 1.0 + 0.25 * index, "max": n}
            if fallback is None:
                metrics["round_size"] = stop
            else:
                metrics["samples"] = n + 8  # a cascade's metrics.json counts the samples of both stages
                metrics["stages"] = [{"model": run_cfg["model"], "samples": n, "round_size": stop},
                                     {"model": fallback, "samples": 8, "round_size": 4}]
        Path(run_cfg["output_dir"]).mkdir(parents=True)
        (Path(run_cfg["output_dir"]) / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    monkeypatch.setattr(sweep_module, "run_point", fake_run_point)
    args = ["models=[/ckpt/student]", "steps=[3,5]", "samples=[4]", "stop_rounds=[null,2]", "fallbacks=[null,/ckpt/ar]",
            "task=countdown", "limit=3", "executor=local", "device=cpu", "progress=false", "plot=false",
            f"output_dir={tmp_path}"]
    assert sweep_module.main(args) == 0
    rows = _read_csv(tmp_path / "sweep.csv")
    names = [f"steps{s}-n4{t}" for s in (3, 5) for t in ("", "-stop2", "-stop2-then-ar")]
    assert [(r["steps"], r["stop_round"], r["fallback"]) for r in rows] == [
        (s, r, f) for s in ("3", "5") for r, f in (("", ""), ("2", ""), ("2", "/ckpt/ar"))]
    _assert_rows_are_the_runs(rows, [tmp_path / "student" / name for name in names])
    numbers = [r[c] for r in rows for c in sweep_module.COLUMNS[sweep_module.COLUMNS.index("pass@1"):] if r[c] != ""]
    assert len(numbers) == len(set(numbers))  # all distinct: no column can stand in for another
    md = (tmp_path / "sweep.md").read_text().splitlines()[2:]
    for line, name in zip(md, names):
        cells = dict(zip(sweep_module.COLUMNS, (c.strip() for c in line.strip("|").split("|"))))
        want = _expected_row(json.loads((tmp_path / "student" / name / "metrics.json").read_text()))
        for key in sweep_module.COLUMNS[5:]:
            value = want[key]
            assert cells[key] == ("-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)), \
                (name, key)


def test_grid_directories_are_distinct():
    cfg = compose("sweep", ["models=[/a/ckpt,/b/ckpt,null]", "steps=[null,8]", "samples=4", "output_dir=/out"])
    points = sweep_module.grid(cfg)
    assert len(points) == 6 and len({p["output_dir"] for p in points}) == 6
    assert points[0] == {"model": "/a/ckpt", "steps": None, "samples": 4, "stop_round": None, "fallback": None, "strategy": "best_of_n",
                         "output_dir": "/out/ckpt/stepsdefault-n4"}
    assert points[2]["output_dir"] == "/out/ckpt-1/stepsdefault-n4"
    assert points[5]["output_dir"] == "/out/default/steps8-n4"


@pytest.mark.parametrize("override,needle", [
    ("samples=[4,-1]", "samples=-1"),
    ("steps=[0]", "steps=0"),
    ("models=[]", "models"),
    ("executor=bogus", "executor"),
    ("limit=-3", "limit"),
    ("task=nope", "countdown, gsm8k, sudoku, wordproblems"),
    ("stop_rounds=[0]", "stop_rounds=0"),
    ("stop_on=vibes", "stop_on"),
    ("fallbacks=[countdown-cd3-ar]", "stop_rounds"),
])
def test_bad_sweep_overrides_are_one_line_errors(override, needle, tiny_ckpt, tmp_path, capsys):  # noqa: F811
    assert sweep_module.main(_args(tiny_ckpt, tmp_path, override)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert needle in err
    assert not (tmp_path / "sweep.csv").exists()


def test_a_sweep_compares_best_of_n_with_repair(tiny_ckpt, tmp_path):  # noqa: F811
    """strategies=[best_of_n,repair]: each point run both ways, each its own run directory whose
    metrics.json the row reports; the repaired point records its repairs."""
    assert sweep_module.main(_args(tiny_ckpt, tmp_path, "steps=[2]", "samples=[2]", "strategies=[best_of_n,repair]",
                                   "repair.rounds=1", "plot=false")) == 0
    with open(tmp_path / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["strategy"] for r in rows] == ["best_of_n", "repair"]
    plain, repaired = (tmp_path / Path(tiny_ckpt).name / name for name in ("steps2-n2", "steps2-n2-repair"))
    _assert_rows_are_the_runs(rows, [plain, repaired])
    assert "repair" not in json.loads((plain / "metrics.json").read_text())
    assert "repair" in json.loads((repaired / "metrics.json").read_text())
    assert json.loads((repaired / "run_config.json").read_text())["strategy"]["rounds"] == 1


def test_a_sweep_runs_particle_search_with_its_options(tiny_ckpt, tmp_path):  # noqa: F811
    assert sweep_module.main(_args(tiny_ckpt, tmp_path, "steps=[2]", "samples=[2]", "strategies=[best_of_n,smc]",
                                   "smc.every=1", "smc.weights=confidence", "plot=false")) == 0
    with open(tmp_path / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["strategy"] for r in rows] == ["best_of_n", "smc"]
    particles = tmp_path / Path(tiny_ckpt).name / "steps2-n2-smc"
    assert json.loads((particles / "run_config.json").read_text())["strategy"] == {"name": "smc", "every": 1,
                                                                                    "weights": "confidence"}
    assert json.loads((particles / "metrics.json").read_text())["smc"]["checks"] > 0
