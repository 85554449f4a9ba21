"""A cascade one problem at a time: the fast student first, the AR twin only where it found nothing.

    python examples/cascade.py [STUDENT] [AR] [ROUND1] [MAX1] [ROUND2] [MAX2] [LIMIT]
    python examples/cascade.py countdown-cd3-num-sdtt-4 countdown-cd3-ar 1 4 32 64 100

Answers the first LIMIT test problems one at a time (an interactive user waiting for each
answer) three ways, each verify-and-stop: the student alone (rounds of ROUND1, at most
MAX1), the AR twin alone (rounds of 8, at most MAX2), and the cascade of the two (the
student as alone, then the AR twin in rounds of ROUND2, at most MAX2, where no student
sample verified). Prints verified accuracy, samples drawn and mean milliseconds per
problem. The cascade's first stage draws exactly the student-alone candidates (same
seeds), so it solves at least what the student solves alone.
"""
import sys
import time

from sdtt_search import Cascade, Search, Stage, load_model
from sdtt_search.search.report import verified_pick_correct
from tasks import load_task


def _one_at_a_time(name: str, solve, problems) -> dict:
    """Mean verified accuracy, samples and ms per problem of ``solve([problem]) -> [ProblemResult]``."""
    solve(problems[:1])  # warm-up
    solved = drawn = reached = 0
    start = time.perf_counter()
    for problem in problems:
        (result,) = solve([problem])
        solved += verified_pick_correct(result)
        drawn += len(result.candidates)
        reached += bool(result.stage_samples and result.stage_samples[1])
    ms = (time.perf_counter() - start) / len(problems) * 1e3
    n = len(problems)
    row = {"search": name, "accuracy": solved / n, "samples": drawn / n, "ms": ms, "reached_ar": reached / n}
    print(f"| {name} | {row['accuracy']:.3f} | {row['samples']:.2f} | {ms:.1f} | {row['reached_ar']:.3f} |")
    return row


def main(student_name: str = "countdown-cd3-num-sdtt-4", ar_name: str = "countdown-cd3-ar", round1: int = 1,
         max1: int = 4, round2: int = 32, max2: int = 64, limit: int = 100) -> list[dict]:
    student, ar = load_model(student_name), load_model(ar_name)
    meta = student.meta["task"]
    task = load_task(meta["name"], **(meta.get("options") or {}))
    problems = task.problems("test", limit=limit)
    first = Search(student, task, student.default_sampler(), batch_size=256, seed=0)
    second = Search(ar, task, ar.default_sampler(), batch_size=256, seed=1)
    cascade = Cascade([Stage(first, max1, round1), Stage(second, max2, round2)])
    print(f"{len(problems)} {task.name} problems, one at a time")
    print("| search | verified accuracy | samples per problem | ms per problem | share passed to the AR twin |")
    print("|---|---|---|---|---|")
    return [
        _one_at_a_time(f"{student_name} alone, rounds of {round1} up to {max1}",
                       lambda ps: first.until_verified(ps, max1, round1), problems),
        _one_at_a_time(f"{ar_name} alone, rounds of 8 up to {max2}",
                       lambda ps: Search(ar, task, ar.default_sampler(), batch_size=256, seed=0)
                       .until_verified(ps, max2, min(8, max2)), problems),
        _one_at_a_time(f"cascade: the student, then {ar_name} in rounds of {round2}", cascade.run, problems),
    ]


if __name__ == "__main__":
    main(*sys.argv[1:3], *(int(a) for a in sys.argv[3:8]))
