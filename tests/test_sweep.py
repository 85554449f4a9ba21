"""``python -m sdtt_search.sweep`` (local executor) on a tiny grid."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from sdtt_search import sweep as sweep_module
from sdtt_search.cli import compose
from sdtt_search.search.engine import Search
from search_fixtures import tiny_ckpt  # noqa: F401 - pytest fixture


def _args(model, out, *extra):
    return [f"models=[{model}]", "steps=[2,4]", "samples=[2,4]", "task=countdown", "limit=3", "executor=local",
            "device=cpu", "progress=false", f"output_dir={out}", *extra]


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
    md = (tmp_path / "sweep.md").read_text().splitlines()
    assert md[0].startswith("| model | steps | samples | stop_round | fallback | samples_drawn | pass@1 | maj@N") and len(md) == 2 + 4
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


def test_grid_directories_are_distinct():
    cfg = compose("sweep", ["models=[/a/ckpt,/b/ckpt,null]", "steps=[null,8]", "samples=4", "output_dir=/out"])
    points = sweep_module.grid(cfg)
    assert len(points) == 6 and len({p["output_dir"] for p in points}) == 6
    assert points[0] == {"model": "/a/ckpt", "steps": None, "samples": 4, "stop_round": None, "fallback": None,
                         "output_dir": "/out/ckpt/stepsdefault-n4"}
    assert points[2]["output_dir"] == "/out/ckpt-1/stepsdefault-n4"
    assert points[5]["output_dir"] == "/out/default/steps8-n4"


@pytest.mark.parametrize("override,needle", [
    ("samples=[4,-1]", "samples=-1"),
    ("steps=[0]", "steps=0"),
    ("models=[]", "models"),
    ("executor=bogus", "executor"),
    ("limit=-3", "limit"),
    ("task=nope", "countdown, gsm8k, sudoku"),
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
