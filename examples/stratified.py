"""Stratified first tokens: a problem's candidates spread over the model's first choices.

    python examples/stratified.py [MODEL] [STRATIFY] [SAMPLES] [LIMIT]
    python examples/stratified.py countdown-cd3-num-sdtt-4 3 16 300
    python examples/stratified.py countdown-cd3-ar 3 16 300     # AR models: the transformers backend

Independent draws of one problem repeat themselves: the candidates of a sharp model
start the same way again and again. ``SamplerConfig(stratify=3)`` draws the first three
tokens of candidate i at point i of a randomised Halton sequence shared by the problem's
candidates, so the first k candidates split the model's probability of each first choice
evenly (a choice of probability p is taken about k p times, never by chance 0 times when
k p >= 1), while each candidate alone is still an exact draw of the model (the same
pass@1). Prints, for the model's own sampler and the stratified one, pass@1 and, over
each problem's first k candidates, the share of problems solved (verified@k) and the
distinct first tokens drawn.
"""
import dataclasses
import sys

from sdtt_search import Search, load_model
from tasks import load_task


def _first_token(text: str) -> str:
    return text.split()[0] if text.split() else text[:1]


def main(model_name: str = "countdown-cd3-num-sdtt-4", stratify: int = 3, samples: int = 16,
         limit: int = 300) -> dict:
    model = load_model(model_name, ar_backend="transformers")
    meta = model.meta["task"]
    task = load_task(meta["name"], **(meta.get("options") or {}))
    problems = task.problems("test", limit=limit)
    plain = model.default_sampler()
    stratified = dataclasses.replace(plain, stratify=stratify)
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= samples]
    print(f"{len(problems)} {task.name} test problems x {samples} samples, {model_name}")
    print("| sampler | pass@1 | " + " | ".join(f"verified@{k} (distinct first tokens)" for k in ks) + " |")
    print("|---|---|" + "---|" * len(ks))
    rows = {}
    for name, sampler in (("independent", plain), (f"stratify={stratify}", stratified)):
        result = Search(model, task, sampler).best_of_n(problems, samples)
        row = {"pass@1": sum(c.correct for r in result.problems for c in r.candidates) / (len(problems) * samples)}
        for k in ks:
            row[f"verified@{k}"] = sum(any(c.verified for c in r.candidates[:k]) for r in result.problems) / len(problems)
            row[f"distinct@{k}"] = sum(len({_first_token(c.text) for c in r.candidates[:k]})
                                       for r in result.problems) / len(problems)
        rows[name] = row
        print(f"| {name} | {row['pass@1']:.3f} | "
              + " | ".join(f"{row[f'verified@{k}']:.3f} ({row[f'distinct@{k}']:.2f})" for k in ks) + " |")
    return rows


if __name__ == "__main__":
    args = sys.argv[1:]
    types = (str, int, int, int)
    main(*(t(a) for t, a in zip(types, args)))
