"""Fault injection: a run killed at any point, torn or corrupted lines, a full disk or a
read-only output directory loses nothing and resumes to the uninterrupted run's results.

(A killed Ray worker and a lost Ray node are in test_ray_executor.py.)
"""
from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdtt_search import run as run_module
from search_fixtures import tiny_ckpt  # noqa: F401 - pytest fixture

LIMIT, SAMPLES = 12, 4
REPO = Path(__file__).resolve().parent.parent


def _args(model, out, *extra):
    # batch_size=8: two problems per batch, six batches
    return ["task=countdown", f"model={model}", f"samples={SAMPLES}", f"limit={LIMIT}", "sampler.steps=4",
            "sampler.temperature=1.0", "seed=3", "batch_size=8", "device=cpu", "plot=false", "progress=false",
            f"output_dir={out}", *extra]


def _by_id(out: Path) -> dict:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {r["id"]: [(c["text"], c["correct"], c["verified"], c["score"]) for c in r["candidates"]] for r in rows}


def assert_same_results(got: dict, want: dict) -> None:
    """The same problems, and per problem the same candidates, bit for bit: texts, verdicts
    and scores (a problem redone in a batch of another shape is decoded by batch-invariant
    kernels, docs/search.md#guarantees)."""
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key


@pytest.fixture(scope="module")
def uninterrupted(tiny_ckpt, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("whole")
    assert run_module.main(_args(tiny_ckpt, out)) == 0
    return _by_id(out)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_kill_9_at_a_seeded_point_then_resume_gives_the_uninterrupted_results(tiny_ckpt, uninterrupted,  # noqa: F811
                                                                              tmp_path, seed):
    """SIGKILL the run once its results file holds a seeded number of lines (or in the
    middle of writing one), then rerun: every problem's candidates are the uninterrupted
    run's, bit for bit, and each problem is written once."""
    stop_after = random.Random(seed).randint(1, LIMIT - 2)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "sdtt_search.run", *_args(tiny_ckpt, out)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        if results.exists() and results.read_bytes().count(b"\n") >= stop_after:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    written = results.read_bytes().count(b"\n") if results.exists() else 0
    assert written < LIMIT, "the run finished before the kill: nothing was tested"
    assert run_module.main(_args(tiny_ckpt, out)) == 0
    resumed = _by_id(out)
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == LIMIT == len({json.loads(line)["id"] for line in lines})
    assert_same_results(resumed, uninterrupted)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["problems"] == LIMIT and metrics["wall_s"] > 0


def test_torn_and_corrupted_lines_are_redone(tiny_ckpt, uninterrupted, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    assert run_module.main(_args(tiny_ckpt, out)) == 0
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    lines[3] = '{"id": "cd3-test-000003", "candidates": [{"te'  # corrupted in the middle of the file
    lines[-1] = lines[-1][: len(lines[-1]) // 3]  # torn at the end
    (out / "results.jsonl").write_text("".join(lines))
    assert run_module.main(_args(tiny_ckpt, out)) == 0
    assert_same_results(_by_id(out), uninterrupted)
    assert len((out / "results.jsonl").read_text().splitlines()) == LIMIT


def _failing_open_after(path: Path, lines_ok: int, err: int):
    """An ``open`` whose appends to ``path`` fail with ``err`` after ``lines_ok`` lines."""
    real_open = open
    count = {"n": 0}

    def fake_open(file, mode="r", *args, **kwargs):
        if Path(file) == path and "a" in mode:
            count["n"] += 1
            if count["n"] > lines_ok:
                raise OSError(err, os.strerror(err))
        return real_open(file, mode, *args, **kwargs)

    return fake_open


def test_a_full_disk_is_a_one_line_error_and_loses_nothing(tiny_ckpt, uninterrupted, tmp_path, monkeypatch,  # noqa: F811
                                                           capsys):
    out = tmp_path / "run"
    import builtins

    from sdtt_search.search import store

    monkeypatch.setattr(store, "open", _failing_open_after(out / "results.jsonl", 5, errno.ENOSPC), raising=False)
    assert run_module.main(_args(tiny_ckpt, out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "5 problems written before are kept" in err
    kept = _by_id(out)
    assert len(kept) == 5
    assert_same_results(kept, {k: uninterrupted[k] for k in kept})
    monkeypatch.setattr(store, "open", builtins.open, raising=False)
    assert run_module.main(_args(tiny_ckpt, out)) == 0
    assert_same_results(_by_id(out), uninterrupted)


def test_a_read_only_output_dir_is_a_one_line_error_and_keeps_its_results(tiny_ckpt, uninterrupted, tmp_path,  # noqa: F811
                                                                          monkeypatch, capsys):
    out = tmp_path / "run"
    assert run_module.main(_args(tiny_ckpt, out, "limit=4")) == 0
    before = (out / "results.jsonl").read_bytes()
    real_write_text = Path.write_text

    def read_only(self, *args, **kwargs):  # as root, chmod cannot make a directory read-only: pretend EROFS
        if self.parent == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", read_only)
    assert run_module.main(_args(tiny_ckpt, out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"output_dir={out} cannot be written (Read-only file system)" in err
    assert (out / "results.jsonl").read_bytes() == before
