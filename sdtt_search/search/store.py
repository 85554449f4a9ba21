"""results.jsonl written as problems finish, and resume from it."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Iterable

from .results import ProblemResult

RESULTS = "results.jsonl"
RUN_CONFIG = "run_config.json"
RUN_STATE = "run_state.json"


class ResultStore:
    """Append-only store of ``ProblemResult`` lines in ``output_dir/results.jsonl``.

    A rerun with the same ``output_dir`` skips the problems already there. A line
    cut short by a kill is dropped (and rewritten on resume), so nothing is lost
    and no problem is counted twice. The sampling time spent is saved with every
    line (``run_state.json``), so a run killed and resumed reports true throughput.
    """

    def __init__(self, output_dir: str | Path, config: dict, resume_keys: Iterable[str]):
        self.dir = Path(output_dir)
        if self.dir.exists() and not self.dir.is_dir():
            raise ValueError(f"output_dir={self.dir} is a file, not a directory; pass a directory")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / ".write_test"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise ValueError(f"output_dir={self.dir} cannot be written ({err.strerror or err}); "
                             "pass a writable directory") from None
        self.path = self.dir / RESULTS
        self.config = config
        self._check_config(list(resume_keys))
        self.results: dict[str, ProblemResult] = {}
        self._load()
        self.wall_s = float(self._read_state().get("wall_s", 0.0))
        self._clock: tuple[float, float] | None = None  # (perf_counter at start, wall_s then)
        self.resumed = len(self.results)  # problems already done when this run started
        self._nan_warned = False

    def _check_config(self, keys: list[str]) -> None:
        path = self.dir / RUN_CONFIG
        if path.exists() and self.path.exists():
            old = json.loads(path.read_text())
            # a fingerprint absent from an older run's config is unknown, not different
            diff = [k for k in keys if old.get(k) != self.config.get(k)
                    and not (k.endswith("fingerprint") and k not in old)]
            if diff:
                k = diff[0]
                what = ("results of other weights under the same model name" if k.endswith("fingerprint")
                        else "results of another run")
                raise ValueError(
                    f"{self.dir} holds {what} ({k}={old.get(k)!r}, now {self.config.get(k)!r}); "
                    "use a new output_dir or delete the old one"
                )
        path.write_text(json.dumps(self.config, indent=2, default=str))

    def _load(self) -> None:
        if not self.path.exists():
            return
        good_lines = []
        with open(self.path) as f:
            for line in f:
                try:
                    result = ProblemResult.from_json(json.loads(line))
                except (json.JSONDecodeError, TypeError, KeyError):
                    continue  # a partial line from a killed run
                if result.id not in self.results:
                    self.results[result.id] = result
                    good_lines.append(line if line.endswith("\n") else line + "\n")
        with open(self.path, "w") as f:  # drop partial/duplicate lines before appending
            f.writelines(good_lines)

    def _read_state(self) -> dict:
        path = self.dir / RUN_STATE
        try:
            state = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, json.JSONDecodeError):
            return {}  # a state torn by a kill: the time of that run is lost, nothing else
        return state if isinstance(state, dict) else {}

    def done(self, problem_id: str) -> bool:
        return problem_id in self.results

    def start_clock(self) -> None:
        """Start counting this run's sampling time (added to what earlier runs spent)."""
        self._clock = (time.perf_counter(), self.wall_s)

    def _tick(self) -> None:
        if self._clock is not None:
            started, before = self._clock
            self.wall_s = before + time.perf_counter() - started
            tmp = self.dir / (RUN_STATE + ".tmp")
            tmp.write_text(json.dumps({"wall_s": self.wall_s}))
            os.replace(tmp, self.dir / RUN_STATE)

    def stop_clock(self) -> None:
        """Save the time spent so far and stop counting."""
        self._tick()
        self._clock = None

    def add(self, result: ProblemResult) -> None:
        if result.id in self.results:
            return
        self._finite_scores(result)
        line = json.dumps(result.to_json(), allow_nan=False, default=str) + "\n"
        try:
            with open(self.path, "a") as f:
                f.write(line)
                f.flush()
            self._tick()
        except OSError as err:  # a full disk, a read-only file system: stop in one line, keep what is written
            raise RuntimeError(f"cannot write to output_dir={self.dir} ({err.strerror or err}); the "
                               f"{len(self.results)} problems written before are kept: fix it and rerun to resume") from None
        self.results[result.id] = result

    def _finite_scores(self, result: ProblemResult) -> None:
        """A NaN or infinite log-probability (broken weights) is kept as -inf in memory
        (ranked last by confidence) and written as null: results.jsonl stays JSON."""
        bad = 0
        for c in result.candidates:
            if not math.isfinite(c.score):
                c.score, bad = float("-inf"), bad + 1
            if c.reward is not None and not math.isfinite(c.reward):
                c.reward, bad = float("-inf"), bad + 1
        if bad and not self._nan_warned:
            self._nan_warned = True
            print(f"warning: {result.id}: {bad} candidate scores are not finite numbers (NaN or infinite "
                  "log-probabilities: check the model's weights); written as null", file=sys.stderr)

    def ordered(self, ids: Iterable[str]) -> list[ProblemResult]:
        return [self.results[i] for i in ids if i in self.results]
