"""Countdown (CD3 / CD4 / CD5): combine n numbers with + - * / to reach a target.

Two public file formats load as they are, one JSON object per line; which one a
file holds is read from its first record, and every line must then follow it (an empty
``output`` is a problem without a reference solution):

* operands and target in ``input``, a solution in ``output`` (the format of the
  diffusion-versus-AR planning papers, and the one this module writes)::

    {"input": "15,44,79,50", "output": "44-15=29,79-29=50"}

* operands in ``input``, the target alone in ``output`` (the 256-problem CD3 test
  set of the LLaDA reinforcement-learning papers, d1 and its successors)::

    {"input": "30,100,93", "output": "23"}

The operand count must equal the task's ``n``; anything else is a one-line
``file:line`` error. A problem is stored as ``prompt = "a,b,c,target"`` whatever
the format; without a reference solution its ``reference`` is ``""``.

A solution is a comma-separated list of ``a op b=c`` equations. It is valid when
(the stricter "Dream" checker):

* every equation parses (see :mod:`tasks.safe_arith`) and its arithmetic is exact,
  with ``/`` only as exact integer division and every result positive;
* each operand and each intermediate result is used exactly once;
* the last result equals the target.

The check needs no reference solution: any valid solution counts, so
:meth:`CountdownTask.verify` and :meth:`CountdownTask.is_correct` are the same.

Answer key for voting (:meth:`CountdownTask.extract_answer`): the *canonical
solution string* of a well-formed chain (spaces removed, the operands of ``+``
and ``*`` written larger first), or None when the text is not a well-formed,
arithmetically exact chain with positive results. The final number would be a
useless key (every valid solution ends on the target, and so may invalid ones);
the canonical string groups identical solutions, and every non-None key is at
least self-consistent arithmetic. Best-of-N should prefer :meth:`verify`, which
is exact and gold-free.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Iterator, Sequence

from .base import Problem, Task
from .errors import TaskError
from .jsonl import read_jsonl, write_jsonl
from .partial import CONSISTENT, UNKNOWN_VERDICT, VIOLATED, PartialVerdict, committed_runs, well_formed
from .safe_arith import MAX_DIGITS, Step, evaluate_step, format_equations, parse_equations

#: how many problems the generated "test" / "validation" splits hold by default
DEFAULT_SPLIT_SIZE = 1000
_MAX_INPUT_CHARS = 200


# ---------------------------------------------------------------------------
# parsing and checking
# ---------------------------------------------------------------------------
def parse_input(text: str) -> tuple[tuple[int, ...], int] | None:
    """``"15,44,79,50"`` -> ``((15, 44, 79), 50)``; None if malformed."""
    try:
        if not isinstance(text, str) or len(text) > _MAX_INPUT_CHARS:
            return None
        parts = [p.strip() for p in text.strip().split(",")]
        if len(parts) < 3:
            return None
        vals = []
        for p in parts:
            if not p or len(p) > MAX_DIGITS or not (p.isascii() and p.isdigit()):
                return None
            vals.append(int(p))
        return tuple(vals[:-1]), vals[-1]
    except Exception:  # pragma: no cover
        return None


def format_input(numbers: Sequence[int], target: int) -> str:
    """Inverse of :func:`parse_input`."""
    return ",".join(str(int(x)) for x in [*numbers, target])


def check_solution(numbers: Sequence[int], target: int, text: str) -> bool:
    """Whether ``text`` is a valid solution of (``numbers`` -> ``target``). Never raises."""
    try:
        steps = parse_equations(text)
        if steps is None or len(steps) != len(numbers) - 1:
            return False
        pool = list(numbers)
        for s in steps:
            if s.a not in pool:
                return False
            pool.remove(s.a)
            if s.b not in pool:
                return False
            pool.remove(s.b)
            value = evaluate_step(s.a, s.op, s.b)
            if value is None or value != s.c or value <= 0:
                return False
            pool.append(value)
        return len(pool) == 1 and pool[0] == target and steps[-1].c == target
    except Exception:  # pragma: no cover - defensive
        return False


def canonical_solution(text: str) -> str | None:
    """Canonical string of a self-consistent equation chain, or None.

    Without the problem only the arithmetic (exact, positive results) can be
    checked; operand use and the target are checked by :func:`check_solution`.
    Spaces are removed and the operands of ``+``/``*`` are written larger first,
    so ``"15+44 = 59"`` and ``"44+15=59"`` give the same key.
    """
    try:
        steps = parse_equations(text)
        if steps is None:
            return None
        out = []
        for s in steps:
            value = evaluate_step(s.a, s.op, s.b)
            if value is None or value != s.c or value <= 0:
                return None
            a, b = (max(s.a, s.b), min(s.a, s.b)) if s.op in "+*" else (s.a, s.b)
            out.append(Step(a, s.op, b, s.c))
        return format_equations(out)
    except Exception:  # pragma: no cover
        return None


_ALLOWED = frozenset("0123456789+-*/=, \t\r\n")


def partial_check(numbers: Sequence[int], target: int, pieces: Sequence[str | None],
                  ended: bool = False) -> PartialVerdict:
    """Check a partly decoded solution (see :mod:`tasks.partial`). Never raises.

    A committed character outside the solution grammar is a violation. An equation is
    *complete* when both its ends are committed: a comma, or the start of the completion,
    or its end (``ended``). Every complete equation must parse as ``a op b=c`` with exact,
    positive arithmetic; where everything before it is committed as well, its operands
    must still be available (the operands and earlier results, each used once), there
    may be at most ``n - 1`` equations, and a completion that ended must end on the
    target after exactly ``n - 1`` equations. Blame: the positions of the offending
    equation (or character).
    """
    try:
        if not well_formed(pieces):
            return UNKNOWN_VERDICT
        checked = False
        pool = list(numbers)  # the first run's chain: operands and results still available
        known_steps = 0
        for run in committed_runs(pieces):
            bad = next((k for k, ch in enumerate(run.text) if ch not in _ALLOWED), None)
            if bad is not None:
                return PartialVerdict(VIOLATED, run.positions(bad, bad + 1), f"character {run.text[bad]!r}")
            from_start = run.owner[0] == 0 if run.owner else False  # nothing before it is masked
            reaches_end = bool(ended and run.owner and run.owner[-1] == len(pieces) - 1)
            text = run.text.replace("\n", ",")
            bounds = [-1] + [k for k, ch in enumerate(text) if ch == ","] + [len(text)]
            for k in range(len(bounds) - 1):
                start, end = bounds[k] + 1, bounds[k + 1]
                if not ((k > 0 or from_start) and (k < len(bounds) - 2 or reaches_end)):
                    continue  # an end of this equation is still masked
                blame = run.positions(start, end)
                steps = parse_equations(text[start:end]) if text[start:end].strip() else None
                if steps is None or len(steps) != 1:
                    return PartialVerdict(VIOLATED, blame, f"not an equation: {text[start:end][:40]!r}")
                (step,) = steps
                value = evaluate_step(step.a, step.op, step.b)
                if value is None or value != step.c or value <= 0:
                    return PartialVerdict(VIOLATED, blame, f"wrong arithmetic: {step}")
                checked = True
                if from_start:  # every equation before this one is known: the pool is exact
                    known_steps += 1
                    for x in (step.a, step.b):
                        if x not in pool:
                            return PartialVerdict(VIOLATED, blame, f"{x} is not available")
                        pool.remove(x)
                    pool.append(value)
                    if known_steps > len(numbers) - 1:
                        return PartialVerdict(VIOLATED, blame, "more equations than operands allow")
        if ended and pieces and all(piece is not None for piece in pieces):
            if known_steps != len(numbers) - 1 or pool != [target]:
                return PartialVerdict(VIOLATED, tuple(range(len(pieces))), "does not reach the target")
        return PartialVerdict(CONSISTENT) if checked else UNKNOWN_VERDICT
    except Exception:  # pragma: no cover - defensive: a checker never raises
        return UNKNOWN_VERDICT


# ---------------------------------------------------------------------------
# solver and generator
# ---------------------------------------------------------------------------
def _moves(a: int, b: int) -> list[tuple[int, str, int, int]]:
    """All valid ``(x, op, y, result)`` combining a and b (positive, exact)."""
    hi, lo = (a, b) if a >= b else (b, a)
    out = [(hi, "+", lo, hi + lo), (hi, "*", lo, hi * lo)]
    if hi > lo:
        out.append((hi, "-", lo, hi - lo))
    if lo > 0 and hi % lo == 0:
        out.append((hi, "/", lo, hi // lo))
    return out


def solve(numbers: Sequence[int], target: int) -> str | None:
    """Exhaustive search: a valid solution string for the problem, or None.

    Tries every pair and operation (positive intermediates, exact division),
    memoising dead multisets. Fast for n <= 5.
    """
    dead: set[tuple[int, ...]] = set()

    def rec(pool: list[int]) -> list[Step] | None:
        if len(pool) == 1:
            return [] if pool[0] == target else None
        key = tuple(sorted(pool))
        if key in dead:
            return None
        for i in range(len(pool)):
            for j in range(i + 1, len(pool)):
                rest = [pool[k] for k in range(len(pool)) if k != i and k != j]
                for x, op, y, r in _moves(pool[i], pool[j]):
                    sub = rec(rest + [r])
                    if sub is not None:
                        return [Step(x, op, y, r)] + sub
        dead.add(key)
        return None

    if len(numbers) < 2 or any(x <= 0 for x in numbers):
        return None
    steps = rec(list(numbers))
    return None if steps is None else format_equations(steps)


def generate_problem(
    rng: random.Random,
    n: int = 4,
    max_operand: int = 100,
    min_target: int = 1,
    max_target: int = 100,
    max_tries: int = 100_000,
) -> tuple[tuple[int, ...], int, str]:
    """Sample ``(numbers, target, solution)``: n operands in 1..max_operand and a
    target in [min_target, max_target] reached by a random binary combination of
    all operands (positive intermediates, exact division).

    Raises:
        TaskError: if no such problem is found in ``max_tries`` attempts.
    """
    for _ in range(max_tries):
        numbers = tuple(rng.randint(1, max_operand) for _ in range(n))
        pool = list(numbers)
        steps: list[Step] = []
        while len(pool) > 1:
            i, j = rng.sample(range(len(pool)), 2)
            x, op, y, r = rng.choice(_moves(pool[i], pool[j]))
            pool = [pool[k] for k in range(len(pool)) if k != i and k != j] + [r]
            steps.append(Step(x, op, y, r))
        if min_target <= pool[0] <= max_target:
            return numbers, pool[0], format_equations(steps)
    raise TaskError(
        f"cannot generate a countdown problem with n={n}, max_operand={max_operand}, "
        f"target in [{min_target}, {max_target}]"
    )


def write_problems(path: str | os.PathLike[str], problems: Sequence[Problem]) -> int:
    """Write problems in the public format ``{"input": ..., "output": ...}``."""
    return write_jsonl(path, ({"input": p.prompt, "output": p.reference} for p in problems))


# ---------------------------------------------------------------------------
# the task
# ---------------------------------------------------------------------------
class CountdownTask(Task):
    """Countdown with a gold-free verifier.

    Options:
        n: number of operands (2..6; CD3/CD4/CD5 are 3/4/5). Default 4.
        max_operand: largest operand (default 100; smaller gives an easier task).
        min_target, max_target: target range (default 1..100). The defaults cover the
            public CD3 test set (operands 1-100, targets 1-100, an eighth of them below
            10); ``max_operand=99, min_target=10, max_target=99`` is the narrower range
            the first zoo models were trained on (their meta records it).
        test_size, validation_size: sizes of the generated fixed splits (1000).
        path: a jsonl file (served for every split) or a directory holding
            ``{split}.jsonl`` files, instead of the generator.

    Splits "test" and "validation" are generated from fixed seeds (distinct from
    any training seed), with duplicate problems removed and validation disjoint
    from test. :meth:`train_examples` streams fresh problems forever, skipping
    any whose operand multiset and target occur in test or validation.
    """

    name = "countdown"
    has_verifier = True
    splits = ("train", "validation", "test")

    def __init__(
        self,
        n: int = 4,
        max_operand: int = 100,
        min_target: int = 1,
        max_target: int = 100,
        test_size: int = DEFAULT_SPLIT_SIZE,
        validation_size: int = DEFAULT_SPLIT_SIZE,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        for key, val, lo in (
            ("n", n, 2),
            ("max_operand", max_operand, 1),
            ("min_target", min_target, 1),
            ("max_target", max_target, 1),
            ("test_size", test_size, 0),
            ("validation_size", validation_size, 0),
        ):
            if not isinstance(val, int) or isinstance(val, bool) or val < lo:
                raise TaskError(f"countdown option {key} must be an integer >= {lo}, got {val!r}")
        if n > 6:
            raise TaskError(f"countdown option n must be between 2 and 6, got {n}")
        if min_target > max_target:
            raise TaskError(f"countdown min_target ({min_target}) > max_target ({max_target})")
        super().__init__(
            n=n, max_operand=max_operand, min_target=min_target, max_target=max_target,
            test_size=test_size, validation_size=validation_size,
            path=None if path is None else str(path),
        )
        self.n = n
        self.path = None if path is None else Path(path)
        if self.path is not None and not self.path.exists():
            raise TaskError(f"countdown data not found at {self.path}; pass path= a jsonl file or a directory of {{split}}.jsonl")
        self._cache: dict[str, list[Problem]] = {}

    # -- data ---------------------------------------------------------------
    @property
    def _key(self) -> str:
        o = self.options
        return f"n={o['n']}|max={o['max_operand']}|t={o['min_target']}-{o['max_target']}"

    def _generate_split(self, split: str, size: int, exclude: set[tuple], limit: int | None) -> list[Problem]:
        rng = random.Random(f"sdtt-countdown|{split}|{self._key}")
        want = size if limit is None else min(size, limit)
        seen = set(exclude)
        out: list[Problem] = []
        tries = 0
        while len(out) < want:
            tries += 1
            if tries > 50 * size + 10_000:
                raise TaskError(
                    f"countdown: only {len(out)} distinct {split} problems found for {self._key}; "
                    f"lower {split}_size or widen the options"
                )
            nums, target, sol = generate_problem(rng, self.n, **self._gen_opts())
            k = (tuple(sorted(nums)), target)
            if k in seen:
                continue
            seen.add(k)
            out.append(self._make(split, len(out), format_input(nums, target), sol))
        return out

    def _gen_opts(self) -> dict[str, int]:
        o = self.options
        return {"max_operand": o["max_operand"], "min_target": o["min_target"], "max_target": o["max_target"]}

    def _make(self, split: str, i: int, inp: str, out: str) -> Problem:
        parsed = parse_input(inp)
        nums, target = parsed if parsed is not None else ((), 0)
        return Problem(
            id=f"cd{len(nums) or self.n}-{split}-{i:06d}",
            prompt=inp,
            reference=out,
            meta={"numbers": nums, "target": target},
        )

    def _load_file(self, split: str, file: Path) -> list[Problem]:
        """Problems of a file in either public format (module docstring)."""
        out: list[Problem] = []
        target_only: bool | None = None  # the file's format, read from its first record
        for lineno, rec in read_jsonl(file, required=("input", "output")):
            inp, sol = rec["input"].strip(), rec["output"].strip()
            where = f"{file}:{lineno}"
            bare = sol.isascii() and sol.isdigit() and len(sol) <= MAX_DIGITS
            if target_only is None:
                target_only = bare
            elif bare != target_only:
                want = "a bare target" if target_only else "a solution 'a+b=c,...'"
                raise TaskError(f"{where}: output {sol[:40]!r} is not {want} as on the file's first line; "
                                "one file holds one format")
            parsed = parse_input(f"{inp},{sol}" if target_only else inp)
            if parsed is None:
                raise TaskError(f"{where}: malformed countdown input {inp[:40]!r}: want comma-separated integers")
            numbers, target = parsed
            if len(numbers) != self.n:
                raise TaskError(f"{where}: {len(numbers)} operands, but this task has n={self.n}; "
                                f"load it with n={len(numbers)} (CLI: task.options.n={len(numbers)})")
            if not target_only and sol and not check_solution(numbers, target, sol):
                raise TaskError(f"{where}: output {sol[:40]!r} is not a valid solution of {inp[:40]!r}")
            out.append(self._make(split, len(out), format_input(numbers, target), "" if target_only else sol))
        return out

    def _split_keys(self, split: str) -> set[tuple]:
        return {(tuple(sorted(p.meta["numbers"])), p.meta["target"]) for p in self.problems(split)}

    def problems(self, split: str = "test", limit: int | None = None) -> list[Problem]:
        self._check_split(split)
        self._check_limit(limit)
        if split in self._cache:
            return list(self._cache[split][:limit])
        if self.path is not None:
            file = self.path if self.path.is_file() else self.path / f"{split}.jsonl"
            if not file.is_file():
                raise TaskError(f"countdown: no {split} data at {file}; pass path= a jsonl file or a directory of {{split}}.jsonl")
            probs = self._load_file(split, file)
        elif split == "train":
            raise TaskError("countdown has no fixed train split; use train_examples(seed) for a stream")
        elif split == "test":
            probs = self._generate_split("test", self.options["test_size"], set(), limit)
        else:  # validation: disjoint from test
            probs = self._generate_split(
                "validation", self.options["validation_size"], self._split_keys("test"), limit
            )
        if limit is None or len(probs) >= self._split_size(split):
            self._cache[split] = probs
        return list(probs[:limit])

    def _split_size(self, split: str) -> int:
        return int(self.options.get(f"{split}_size", 0) or 0)

    def train_examples(self, seed: int = 0) -> Iterator[tuple[str, str]]:
        """Fresh generated problems forever, none equal to a test/validation one."""
        held_out: set[tuple] = set()
        for split in ("test", "validation"):
            try:
                held_out |= self._split_keys(split)
            except TaskError:
                if self.path is None:
                    raise
        rng = random.Random(f"sdtt-countdown|train|{self._key}|{seed}")
        while True:
            nums, target, sol = generate_problem(rng, self.n, **self._gen_opts())
            if (tuple(sorted(nums)), target) in held_out:
                continue
            yield format_input(nums, target), sol

    def write_split(self, split: str, path: str | os.PathLike[str], limit: int | None = None) -> int:
        """Write ``problems(split, limit)`` to ``path`` in the public jsonl format."""
        return write_problems(path, self.problems(split, limit))

    # -- formatting ---------------------------------------------------------
    def format_prompt(self, problem: Problem) -> str:
        return problem.prompt

    def format_target(self, problem: Problem) -> str:
        return problem.reference

    # -- reading model output -----------------------------------------------
    def extract_answer(self, text: str) -> str | None:
        """Canonical solution string (see module docstring), or None."""
        return canonical_solution(text)

    def is_correct(self, problem: Problem, text: str) -> bool:
        """Any valid solution counts (same as :meth:`verify`)."""
        return bool(self.verify(problem, text))

    def verify(self, problem: Problem, text: str) -> bool:
        parsed = parse_input(problem.prompt)
        if parsed is None:
            return False
        numbers, target = parsed
        return check_solution(numbers, target, text)

    def partial_check(self, problem: Problem, pieces: Sequence[str | None], ended: bool = False) -> PartialVerdict:
        """See :func:`partial_check` (module level)."""
        parsed = parse_input(problem.prompt)
        return UNKNOWN_VERDICT if parsed is None else partial_check(*parsed, pieces, ended)

    def solve(self, problem: Problem) -> str | None:
        """A valid solution of ``problem`` found by exhaustive search, or None."""
        parsed = parse_input(problem.prompt)
        return None if parsed is None else solve(*parsed)
