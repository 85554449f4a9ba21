"""Sudoku (4x4, 6x6 and 9x9) with a generator of unique-solution puzzles.

A grid is a digit string read row by row: 16 characters for 4x4, 36 for 6x6
(boxes of 2 rows x 3 columns), 81 for 9x9,
``0`` for a blank. The prompt is the puzzle string, the target the solution.

* :meth:`SudokuTask.extract_answer`: the first run of exactly ``size**2`` ASCII
  digits after removing whitespace (so a grid printed over several lines works).
* :meth:`SudokuTask.verify` and :meth:`SudokuTask.is_correct` (the same, gold-free):
  a complete valid grid that keeps every given of the puzzle. Any valid completion
  counts: a quarter of the public 4x4 test set has several solutions.
* :meth:`SudokuTask.score` adds ``matches_reference`` (the grid equals the listed
  solution) and ``cell_accuracy``, the share of blank cells equal to the listed
  solution (the cell accuracy the LLaDA reinforcement-learning papers report, d1
  and its successors).

Files: jsonl ``{"input": puzzle, "output": solution}``, or CSV with the header
``quizzes,solutions`` (Kaggle's 9x9 sets) or ``Puzzle,Solution`` (the public 4x4
test set of those papers: 500 puzzles, 8 givens, ``0`` for a blank).
"""

from __future__ import annotations

import csv
import os
import random
import re
from pathlib import Path
from typing import Iterator, Sequence

from .base import Problem, Task
from .errors import TaskError
from .jsonl import read_jsonl
from .partial import CONSISTENT, UNKNOWN_VERDICT, VIOLATED, PartialVerdict, well_formed

#: the supported sizes and their box shapes (rows, columns)
BOX_SHAPES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}
SIZES = tuple(BOX_SHAPES)
DEFAULT_GIVENS = {4: 8, 6: 14, 9: 36}
MIN_GIVENS = {4: 4, 6: 8, 9: 17}
DEFAULT_SPLIT_SIZE = {4: 1000, 6: 500, 9: 200}
MAX_TEXT_CHARS = 10_000
_RUN_RE = {size: re.compile(r"(?<![0-9])[0-9]{%d}(?![0-9])" % (size * size), re.ASCII) for size in SIZES}
_WS_RE = re.compile(r"[ \t\r\n\f\v]+")
#: accepted CSV headers (lower-cased): Kaggle's 9x9 sets, the public 4x4 test set
CSV_HEADERS = (["quizzes", "solutions"], ["puzzle", "solution"])


# ---------------------------------------------------------------------------
# grid helpers
# ---------------------------------------------------------------------------
def _units(size: int) -> list[list[int]]:
    h, w = BOX_SHAPES[size]
    rows = [[r * size + c for c in range(size)] for r in range(size)]
    cols = [[r * size + c for r in range(size)] for c in range(size)]
    boxes = [
        [(band * h + r) * size + stack * w + c for r in range(h) for c in range(w)]
        for band in range(size // h)
        for stack in range(size // w)
    ]
    return rows + cols + boxes


_UNITS = {s: _units(s) for s in SIZES}
_PEERS = {
    s: [sorted({j for u in _UNITS[s] if i in u for j in u} - {i}) for i in range(s * s)] for s in SIZES
}


def is_valid_solution(grid: str, size: int) -> bool:
    """Whether ``grid`` is a complete, valid size x size sudoku. Never raises."""
    try:
        if size not in _UNITS or not isinstance(grid, str) or len(grid) != size * size:
            return False
        digits = set("123456789"[:size])
        if not set(grid) <= digits:
            return False
        return all(len({grid[i] for i in unit}) == size for unit in _UNITS[size])
    except Exception:  # pragma: no cover
        return False


def agrees_with(puzzle: str, grid: str) -> bool:
    """Whether ``grid`` keeps every given (non-zero cell) of ``puzzle``."""
    return len(puzzle) == len(grid) and all(p == "0" or p == g for p, g in zip(puzzle, grid))


def count_solutions(puzzle: str, size: int, limit: int = 2) -> int:
    """Number of solutions of ``puzzle``, counting up to ``limit`` (backtracking
    with bitmasks and the most-constrained cell first)."""
    n = size * size
    full = (1 << size) - 1
    peers = _PEERS[size]
    cells = [int(ch) for ch in puzzle]
    # conflict check of the givens
    for i, v in enumerate(cells):
        if v and any(cells[j] == v for j in peers[i]):
            return 0
    count = 0

    def rec() -> bool:  # returns True to stop
        nonlocal count
        best, best_mask, best_n = -1, 0, size + 1
        for i in range(n):
            if cells[i] == 0:
                used = 0
                for j in peers[i]:
                    if cells[j]:
                        used |= 1 << (cells[j] - 1)
                mask = full & ~used
                k = bin(mask).count("1")
                if k < best_n:
                    best, best_mask, best_n = i, mask, k
                    if k <= 1:
                        break
        if best < 0:
            count += 1
            return count >= limit
        if best_n == 0:
            return False
        m = best_mask
        while m:
            low = m & -m
            cells[best] = low.bit_length()
            if rec():
                cells[best] = 0
                return True
            m ^= low
        cells[best] = 0
        return False

    rec()
    return count


SINGLES_ORDERS = ("reading", "any")


def fill_singles(puzzle: str, size: int, order: str = "any") -> str | None:
    """The grid a solver that only writes naked singles reaches, or None where it gets stuck.

    A naked single is a blank whose peers (row, column, box) already hold every digit but
    one. ``order="reading"`` writes the blanks left to right, top to bottom, each one a
    naked single at its turn given the givens and the cells written before it (a
    left-to-right writer that never guesses, as an AR model commits); ``order="any"``
    writes any naked single anywhere, again and again (a decoder that commits the most
    certain cell first). Bounded: at most ``size**2`` passes over the grid. Never raises on
    a malformed puzzle (None).
    """
    if order not in SINGLES_ORDERS:
        raise ValueError(f"order must be one of {', '.join(SINGLES_ORDERS)}, got {order!r}")
    n = size * size
    if size not in _UNITS or not isinstance(puzzle, str) or len(puzzle) != n or not puzzle.isascii() \
            or not puzzle.isdigit():
        return None
    digits = set("123456789"[:size])
    grid = list(puzzle)
    peers = _PEERS[size]

    def single(i: int) -> str | None:
        left = digits - {grid[j] for j in peers[i]}
        return left.pop() if len(left) == 1 else None

    if order == "reading":
        for i in range(n):
            if grid[i] == "0":
                if (d := single(i)) is None:
                    return None
                grid[i] = d
    else:
        for _ in range(n):
            progress = False
            for i in range(n):
                if grid[i] == "0" and (d := single(i)):
                    grid[i], progress = d, True
            if not progress:
                break
    out = "".join(grid)
    return out if "0" not in out and is_valid_solution(out, size) else None


def partial_check(puzzle: str, size: int, pieces: Sequence[str | None]) -> PartialVerdict:
    """Check a partly decoded grid (see :mod:`tasks.partial`): position i is cell i, one
    character per position (anything else: ``unknown``). Violated when a committed cell
    is not a digit 1..size, contradicts a given, repeats a digit of a given or of another
    committed cell in its row, column or box, or leaves a masked cell of its unit no
    digit at all. Blame: the committed cells involved. Never raises."""
    try:
        n = size * size
        if size not in _UNITS or len(puzzle) != n or not well_formed(pieces) or len(pieces) < n:
            return UNKNOWN_VERDICT
        cells = pieces[:n]
        if any(c is not None and len(c) != 1 for c in cells):
            return UNKNOWN_VERDICT
        digits = "123456789"[:size]
        for i, c in enumerate(cells):
            if c is not None and c not in digits:
                return PartialVerdict(VIOLATED, (i,), f"cell {i} holds {c!r}")
            if c is not None and puzzle[i] != "0" and c != puzzle[i]:
                return PartialVerdict(VIOLATED, (i,), f"cell {i} contradicts the given {puzzle[i]}")
        value = [c if c is not None else (puzzle[i] if puzzle[i] != "0" else None) for i, c in enumerate(cells)]
        committed = [c is not None and puzzle[i] == "0" for i, c in enumerate(cells)]
        for unit in _UNITS[size]:
            seen: dict[str, int] = {}
            for i in unit:
                if value[i] is None:
                    continue
                if value[i] in seen:
                    j = seen[value[i]]
                    blame = tuple(sorted(k for k in (i, j) if committed[k]))
                    return PartialVerdict(VIOLATED, blame, f"cells {j} and {i} both hold {value[i]}")
                seen[value[i]] = i
        for i in range(n):
            if value[i] is None and {value[j] for j in _PEERS[size][i]} >= set(digits):
                blame = tuple(sorted(j for j in _PEERS[size][i] if committed[j]))
                return PartialVerdict(VIOLATED, blame, f"no digit is left for cell {i}")
        return PartialVerdict(CONSISTENT) if any(committed) else UNKNOWN_VERDICT
    except Exception:  # pragma: no cover - defensive: a checker never raises
        return UNKNOWN_VERDICT


def random_solution(rng: random.Random, size: int) -> str:
    """A random complete grid: a base pattern shuffled by validity-preserving
    symmetries (digit relabelling, row/column permutations within bands/stacks,
    band/stack permutations, and transposition where boxes are square).

    The base pattern for boxes of ``h`` rows x ``w`` columns puts
    ``(w * (r % h) + r // h + c) % size`` at row ``r``, column ``c``.
    """
    h, w = BOX_SHAPES[size]

    def shuffled(seq: list[int]) -> list[int]:
        seq = list(seq)
        rng.shuffle(seq)
        return seq

    bands = shuffled(list(range(size // h)))
    rows = [g * h + r for g in bands for r in shuffled(list(range(h)))]
    stacks = shuffled(list(range(size // w)))
    cols = [g * w + c for g in stacks for c in shuffled(list(range(w)))]
    digits = shuffled(list(range(1, size + 1)))
    grid = [[digits[(w * (r % h) + r // h + c) % size] for c in cols] for r in rows]
    if h == w and rng.random() < 0.5:
        grid = [list(col) for col in zip(*grid)]
    return "".join(str(v) for row in grid for v in row)


def generate_puzzle(rng: random.Random, size: int = 9, givens: int = 36, max_restarts: int = 50) -> tuple[str, str]:
    """``(puzzle, solution)`` with exactly ``givens`` givens and a unique solution.

    Cells are blanked in random order, each kept blank only if the solution
    stays unique; restarts from a new grid if it gets stuck above ``givens``.
    """
    n = size * size
    for _ in range(max_restarts):
        solution = random_solution(rng, size)
        cells = list(solution)
        filled = n
        for i in rng.sample(range(n), n):
            if filled == givens:
                break
            keep = cells[i]
            cells[i] = "0"
            if count_solutions("".join(cells), size, 2) == 1:
                filled -= 1
            else:
                cells[i] = keep
        if filled == givens:
            return "".join(cells), solution
    raise TaskError(f"sudoku: could not generate a {size}x{size} puzzle with {givens} givens; use more givens")


# ---------------------------------------------------------------------------
# the task
# ---------------------------------------------------------------------------
class SudokuTask(Task):
    """Sudoku with a gold-free verifier.

    Options:
        size: 4, 6 (boxes of 2 rows x 3 columns) or 9 (default 9).
        givens: number of givens of generated puzzles (default 8 for 4x4, 14 for
            6x6, 36 for 9x9).
        test_size, validation_size: sizes of the generated fixed splits
            (default 1000 for 4x4, 500 for 6x6, 200 for 9x9).
        path: a jsonl file of ``{"input": puzzle, "output": solution}`` or a CSV
            with columns ``quizzes,solutions`` or ``Puzzle,Solution`` (``.`` is
            read as a blank), served for every split; or a directory of
            ``{split}.jsonl`` / ``{split}.csv``.
    """

    name = "sudoku"
    has_verifier = True
    splits = ("train", "validation", "test")

    def __init__(
        self,
        size: int = 9,
        givens: int | None = None,
        test_size: int | None = None,
        validation_size: int | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        if size not in SIZES or isinstance(size, bool):
            raise TaskError(f"sudoku option size must be 4, 6 or 9, got {size!r}")
        givens = DEFAULT_GIVENS[size] if givens is None else givens
        if not isinstance(givens, int) or isinstance(givens, bool) or not MIN_GIVENS[size] <= givens <= size * size:
            raise TaskError(f"sudoku option givens must be an integer in {MIN_GIVENS[size]}..{size * size}, got {givens!r}")
        sizes = {}
        for key, val in (("test_size", test_size), ("validation_size", validation_size)):
            val = DEFAULT_SPLIT_SIZE[size] if val is None else val
            if not isinstance(val, int) or isinstance(val, bool) or val < 0:
                raise TaskError(f"sudoku option {key} must be a non-negative integer, got {val!r}")
            sizes[key] = val
        super().__init__(size=size, givens=givens, path=None if path is None else str(path), **sizes)
        self.size = size
        self.path = None if path is None else Path(path)
        if self.path is not None and not self.path.exists():
            raise TaskError(f"sudoku data not found at {self.path}; pass path= a jsonl/csv file or a directory of {{split}}.jsonl")
        self._cache: dict[str, list[Problem]] = {}

    # -- data ---------------------------------------------------------------
    def _make(self, split: str, i: int, puzzle: str, solution: str) -> Problem:
        return Problem(
            id=f"sudoku{self.size}-{split}-{i:06d}",
            prompt=puzzle,
            reference=solution,
            meta={"size": self.size, "givens": sum(ch != "0" for ch in puzzle)},
        )

    def _check_grid(self, where: str, puzzle: str, solution: str) -> tuple[str, str]:
        puzzle = puzzle.strip().replace(".", "0")
        solution = solution.strip()
        n = self.size * self.size
        ok = (
            len(puzzle) == n
            and puzzle.isascii()
            and puzzle.isdigit()
            and is_valid_solution(solution, self.size)
            and agrees_with(puzzle, solution)
        )
        if not ok:
            raise TaskError(f"{where}: malformed {self.size}x{self.size} sudoku (want {n}-digit puzzle and its solution)")
        return puzzle, solution

    def _load_file(self, split: str, file: Path) -> list[Problem]:
        out: list[Problem] = []
        if file.suffix == ".csv":
            try:
                with file.open(newline="", encoding="utf-8") as fh:
                    reader = csv.reader(fh)
                    header = next(reader, None)
                    if header is None or [h.strip().lower() for h in header[:2]] not in CSV_HEADERS:
                        raise TaskError(f"{file}:1: malformed csv: expected the header 'quizzes,solutions' "
                                        "or 'Puzzle,Solution'")
                    for row in reader:
                        if not row:
                            continue
                        where = f"{file}:{reader.line_num}"
                        if len(row) < 2:
                            raise TaskError(f"{where}: malformed csv: expected 2 columns")
                        out.append(self._make(split, len(out), *self._check_grid(where, row[0], row[1])))
            except (UnicodeDecodeError, csv.Error) as exc:
                raise TaskError(f"{file}: malformed csv: {exc}") from None
            return out
        for lineno, rec in read_jsonl(file, required=("input", "output")):
            puzzle, solution = self._check_grid(f"{file}:{lineno}", rec["input"], rec["output"])
            out.append(self._make(split, len(out), puzzle, solution))
        return out

    def _generate(self, split: str, size: int, exclude: set[str], limit: int | None) -> list[Problem]:
        rng = random.Random(f"sdtt-sudoku|{split}|size={self.size}|givens={self.options['givens']}")
        want = size if limit is None else min(size, limit)
        seen = set(exclude)
        out: list[Problem] = []
        while len(out) < want:
            puzzle, solution = generate_puzzle(rng, self.size, self.options["givens"])
            if puzzle in seen:
                continue
            seen.add(puzzle)
            out.append(self._make(split, len(out), puzzle, solution))
        return out

    def problems(self, split: str = "test", limit: int | None = None) -> list[Problem]:
        self._check_split(split)
        self._check_limit(limit)
        if split in self._cache:
            return list(self._cache[split][:limit])
        if self.path is not None:
            if self.path.is_file():
                file = self.path
            else:
                cands = [self.path / f"{split}.jsonl", self.path / f"{split}.csv"]
                file = next((c for c in cands if c.is_file()), cands[0])
                if not file.is_file():
                    raise TaskError(f"sudoku: no {split} data at {cands[0]} or {cands[1]}")
            probs = self._load_file(split, file)
        elif split == "train":
            raise TaskError("sudoku has no fixed train split; use train_examples(seed) for a stream")
        else:
            exclude = set() if split == "test" else {p.prompt for p in self.problems("test")}
            probs = self._generate(split, self.options[f"{split}_size"], exclude, limit)
        if limit is None or (self.path is None and len(probs) >= self.options[f"{split}_size"]):
            self._cache[split] = probs
        return list(probs[:limit])

    def train_examples(self, seed: int = 0) -> Iterator[tuple[str, str]]:
        """Fresh generated puzzles forever, none equal to a test/validation puzzle.

        For 6x6 and 9x9 a training puzzle also never shares a held-out solution grid.
        A 4x4 board has only 288 solution grids, all of which the held-out splits
        use, so there only the puzzles themselves are held out.
        """
        held: set[str] = set()
        for split in ("test", "validation"):
            try:
                for p in self.problems(split):
                    held.add(p.prompt)
                    if self.size != 4:
                        held.add(p.reference)
            except TaskError:
                if self.path is None:
                    raise
        rng = random.Random(f"sdtt-sudoku|train|size={self.size}|givens={self.options['givens']}|{seed}")
        while True:
            puzzle, solution = generate_puzzle(rng, self.size, self.options["givens"])
            if puzzle in held or solution in held:
                continue
            yield puzzle, solution

    # -- formatting ---------------------------------------------------------
    def format_prompt(self, problem: Problem) -> str:
        return problem.prompt

    def format_target(self, problem: Problem) -> str:
        return problem.reference

    # -- reading model output -----------------------------------------------
    def extract_answer(self, text: str) -> str | None:
        """First run of exactly size**2 ASCII digits after removing whitespace."""
        try:
            if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
                return None
            m = _RUN_RE[self.size].search(_WS_RE.sub("", text))
            return m.group(0) if m else None
        except Exception:  # pragma: no cover
            return None

    def verify(self, problem: Problem, text: str) -> bool:
        """Gold-free: a complete valid grid that keeps every given of the puzzle."""
        grid = self.extract_answer(text)
        return grid is not None and is_valid_solution(grid, self.size) and agrees_with(problem.prompt, grid)

    def partial_check(self, problem: Problem, pieces: Sequence[str | None], ended: bool = False) -> PartialVerdict:
        """See :func:`partial_check` (module level)."""
        return partial_check(problem.prompt, self.size, pieces)

    def is_correct(self, problem: Problem, text: str) -> bool:
        """Any valid completion of the puzzle (the same as :meth:`verify`)."""
        return self.verify(problem, text)

    def score(self, problem: Problem, text: str) -> dict[str, float]:
        """``correct`` (any valid completion), ``matches_reference`` (the listed
        solution) and ``cell_accuracy`` (share of blank cells equal to the listed
        solution; an output without a grid scores 0)."""
        grid = self.extract_answer(text)
        blanks = [i for i, ch in enumerate(problem.prompt) if ch == "0"]
        cells = 0.0
        if grid is not None and blanks and len(problem.reference) == len(grid):
            cells = sum(grid[i] == problem.reference[i] for i in blanks) / len(blanks)
        return {"correct": float(self.verify(problem, text)),
                "matches_reference": float(grid is not None and grid == problem.reference),
                "cell_accuracy": cells}
