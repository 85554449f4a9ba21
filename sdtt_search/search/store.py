"""results.jsonl written as problems finish, and resume from it."""
from __future__ import annotations

import json
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
    and no problem is counted twice.
    """

    def __init__(self, output_dir: str | Path, config: dict, resume_keys: Iterable[str]):
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / RESULTS
        self.config = config
        self._check_config(list(resume_keys))
        self.results: dict[str, ProblemResult] = {}
        self._load()
        self.wall_s = self._read_state().get("wall_s", 0.0)

    def _check_config(self, keys: list[str]) -> None:
        path = self.dir / RUN_CONFIG
        if path.exists() and self.path.exists():
            old = json.loads(path.read_text())
            diff = [k for k in keys if old.get(k) != self.config.get(k)]
            if diff:
                k = diff[0]
                raise ValueError(
                    f"{self.dir} holds results of another run ({k}={old.get(k)!r}, now {self.config.get(k)!r}); "
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
        return json.loads(path.read_text()) if path.exists() else {}

    def done(self, problem_id: str) -> bool:
        return problem_id in self.results

    def add(self, result: ProblemResult) -> None:
        if result.id in self.results:
            return
        self.results[result.id] = result
        with open(self.path, "a") as f:
            f.write(json.dumps(result.to_json()) + "\n")
            f.flush()

    def add_wall(self, seconds: float) -> None:
        self.wall_s += seconds
        (self.dir / RUN_STATE).write_text(json.dumps({"wall_s": self.wall_s}))

    def ordered(self, ids: Iterable[str]) -> list[ProblemResult]:
        return [self.results[i] for i in ids if i in self.results]
