"""Why order matters on Sudoku: how many puzzles a solver of naked singles finishes when it
must write left to right, against when it may write any cell first.

    python -m benchmarks.sudoku_order --size 9 --givens 30 36 40 45 50 --puzzles 200

A left-to-right model (the AR twin) commits each blank at its turn in reading order; a
masked diffusion model decoded confidence-first may commit the most certain blank anywhere.
With only the simplest deduction (a naked single: the one digit no peer holds), the first
writer finishes a puzzle only if every blank is a single at its turn; the second whenever
singles, found anywhere and written one after another, fill the grid
(``tasks.sudoku.fill_singles``). The gap between the two columns is the part of the task a
left-to-right model must solve by deeper reasoning (or by lucky guesses a verifier keeps),
while an any-order model needs only the local rule. No model is involved: the puzzles are
the task's own seeded test split at each number of givens.
"""
from __future__ import annotations

import argparse

from tasks.sudoku import SINGLES_ORDERS, SIZES, SudokuTask, fill_singles

from .saved_run import save_run


def shares(size: int, givens: int, puzzles: int) -> dict:
    """{"givens", "puzzles", "reading", "any"}: the share of the test split's first ``puzzles``
    puzzles each order of the singles solver finishes (a finished grid is a valid completion)."""
    problems = SudokuTask(size=size, givens=givens, test_size=puzzles).problems("test", limit=puzzles)
    solved = {order: sum(fill_singles(p.prompt, size, order) is not None for p in problems) for order in SINGLES_ORDERS}
    return {"givens": givens, "puzzles": len(problems), **{k: v / len(problems) for k, v in solved.items()}}


def markdown(rows: list[dict], size: int) -> str:
    lines = [f"Sudoku {size}x{size}, the task's seeded test split: share of puzzles finished by naked singles alone", "",
             "| givens | puzzles | left to right | any order |", "|---|---|---|---|"]
    lines += [f"| {r['givens']} | {r['puzzles']} | {r['reading']:.3f} | {r['any']:.3f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=9, choices=SIZES)
    p.add_argument("--givens", type=int, nargs="+", default=[30, 36, 40, 45, 50])
    p.add_argument("--puzzles", type=int, default=200)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.puzzles < 1:
        raise SystemExit("--puzzles must be at least 1")
    rows = [shares(args.size, g, args.puzzles) for g in args.givens]
    report = markdown(rows, args.size)
    print(report)
    if args.out:
        save_run(args.out, "sudoku_order", report, {"size": args.size, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
