"""benchmarks/gpu_train_planning.sh, the planning-task GPU recipe, as a CPU smoke run with tiny settings:
twins of one budget, an SDTT student, and every search of each family side by side."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_cd4_recipe_trains_mdm_twins_a_student_and_compares_their_searches(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "MODEL": "tiny", "STEPS": "3", "BATCH": "4",
           "SDTT_STEPS": "2", "MIN_STEPS": "16", "PROBLEMS": "2", "LATENCY": "1", "SAMPLES": "2", "WORKERS": "0",
           "EVAL": "2", "OUT": str(tmp_path / "cd4"), "OBJECTIVE": "mdm"}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_train_planning.sh"), "cd4"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = tmp_path / "cd4"
    for part in ("mdlm/checkpoint/config.json", "ar/checkpoint/config.json", "sdtt/round-1-steps-16/config.json"):
        assert (out / part).is_file(), part
    report = (out / "native_search.md").read_text()
    for model, search in (("mdlm/checkpoint", "particles"), ("sdtt/round-1-steps-16", "repair"),
                          ("ar/checkpoint:ar_backend=auto", "particles, 2, a check every 4 tokens")):
        assert f"{out / model} | {search}" in report, (model, search)
    assert "task.options.n=4" not in report and "countdown: 2 test problems" in report
    meta = json.loads((out / "mdlm/checkpoint/config.json").read_text())["meta"]
    assert meta["objective"] == "mdm" and meta["sampler"]["remasking"] == "margin"


def test_an_unknown_task_is_a_one_line_error(tmp_path):
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_train_planning.sh"), "cd9"], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "OUT": str(tmp_path / "x")})
    assert done.returncode == 2 and "unknown task cd9: use cd4, cd5, sudoku6 or sudoku9" in done.stdout
