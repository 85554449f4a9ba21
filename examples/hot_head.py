"""A hotter head: the same student, its first tokens drawn hotter, where search branches.

    python examples/hot_head.py [MODEL] [HEAD_TOKENS] [HEAD_TEMPERATURE] [SAMPLES] [LIMIT]
    python examples/hot_head.py countdown-cd3-num-sdtt-4 3 1.3 64 200

Best-of-N draws many candidates of one problem, and on Countdown they branch at their
first operation: a distilled student that never tries the operation a problem needs
fails it whatever N. ``SamplerConfig(head_tokens=3, head_temperature=1.3)`` draws the
first three tokens (one operation: number, operator, number) hotter and the rest at the
model's own temperature. Prints, for the model's own sampler and for the hotter head,
pass@1 and verified@N, the problems each solves that the other does not, and a cascade
of the two (the plain sampler until a candidate verifies, at most 4; then the hot head
on what is left).
"""
import dataclasses
import sys

from sdtt_search import Cascade, Search, Stage, load_model
from sdtt_search.search.report import verified_pick_correct
from tasks import load_task


def main(model_name: str = "countdown-cd3-num-sdtt-4", head_tokens: int = 3, head_temperature: float = 1.3,
         samples: int = 64, limit: int = 200) -> dict:
    model = load_model(model_name)
    meta = model.meta["task"]
    task = load_task(meta["name"], **(meta.get("options") or {}))
    problems = task.problems("test", limit=limit)
    plain = model.default_sampler()
    hot = dataclasses.replace(plain, head_tokens=head_tokens, head_temperature=head_temperature)
    solved, rows = {}, {}
    print(f"{len(problems)} {task.name} test problems x {samples} samples, {model_name}")
    print("| sampler | pass@1 | verified@N | solved only by it |")
    print("|---|---|---|---|")
    runs = {name: Search(model, task, sampler, seed=seed).best_of_n(problems, samples)
            for name, sampler, seed in (("plain", plain, 0), ("hot head", hot, 1))}
    for name, result in runs.items():
        solved[name] = {r.id for r in result.problems if any(c.verified for c in r.candidates)}
    for name, result in runs.items():
        acc = result.metrics["accuracy"]
        other = solved["plain" if name == "hot head" else "hot head"]
        rows[name] = {"pass@1": acc["pass@1"], "verified": acc[f"verified@{samples}"],
                      "only": len(solved[name] - other),
                      "first4": sum(any(c.verified for c in r.candidates[:4]) for r in result.problems) / len(problems)}
        print(f"| {name} | {acc['pass@1']:.3f} | {acc[f'verified@{samples}']:.3f} | {rows[name]['only']} |")
    cascade = Cascade([Stage(Search(model, task, plain, seed=0), 4, 1),
                       Stage(Search(model, task, hot, seed=1), samples, 8)])
    results = cascade.run(problems)
    rows["cascade"] = {"verified": sum(verified_pick_correct(r) for r in results) / len(results),
                       "samples": sum(len(r.candidates) for r in results) / len(results)}
    print(f"\ncascade (plain, at most 4; then the hot head, at most {samples}): verified accuracy "
          f"{rows['cascade']['verified']:.3f} from {rows['cascade']['samples']:.2f} samples per problem")
    return rows


if __name__ == "__main__":
    args = sys.argv[1:]
    types = (str, int, float, int, int)
    main(*(t(a) for t, a in zip(types, args)))
