"""Synthetic grade-school word problems in GSM8K's format, small enough for a CPU model.

The shipped GSM8K models score about zero (real GSM8K needs a pretrained model), so
voting without a verifier (majority, settled-majority stopping, confidence) cannot be
measured on it. This task generates word problems from a small random dependency
chain of quantities, in the spirit of iGSM (Ye, Xu, Li and Allen-Zhu, "Physics of
Language Models: Part 2.1", 2024) and GSM-Infinite (2025): the first person has a
count of some item, and each further person's count is derived from an earlier one
by one operation (``+ - x /`` with a small constant). The question asks for the last
count. Difficulty is the number of operations, ``ops`` (1 to ``max_ops``)::

    Question: Ava has 6 marbles. Ben has 3 times as many marbles as Ava. Cara has 4
    fewer marbles than Ben. How many marbles does Cara have?
    Answer: Ben has 6*3 = <<6*3=18>>18 marbles.
    Cara has 18-4 = <<18-4=14>>14 marbles.
    #### 14

Every answer is computed, never parsed; every division is exact and every count
positive; solutions carry GSM8K's calculator annotations and end in ``#### N``. The
prompt, the target and every scorer are GSM8K's (:class:`tasks.gsm8k.GSM8KTask`:
lm-eval's strict and flexible decisions and the numeric reading), and, as on GSM8K,
no verifier is exposed to the search: the answer is a number.

This is *not* GSM8K: its language is a handful of templates and its arithmetic is a
chain. It measures whether voting and search help a model that can sometimes do the
arithmetic, which is what the real benchmark asks of a real model.

Splits: ``test`` and ``validation`` are generated from fixed seeds (``test_size`` /
``validation_size`` problems, duplicates removed, validation disjoint from test);
``train_examples`` streams fresh problems forever, none equal to a held-out one.
Each problem's ``meta["ops"]`` is its difficulty.
"""
from __future__ import annotations

import random
from typing import Iterator

from .base import Problem, Task
from .errors import TaskError
from .gsm8k import GSM8KTask

NAMES = ("Ava", "Ben", "Cara", "Dan", "Eve", "Finn", "Gia", "Hugo", "Ivy", "Jack", "Kim", "Leo", "Mia", "Noah",
         "Olga", "Paul", "Rosa", "Sam", "Tara", "Uma")
ITEMS = ("apples", "marbles", "stickers", "books", "pencils", "cookies", "shells", "coins", "cards", "stamps")
#: largest count any person may have
MAX_COUNT = 999
DEFAULT_SPLIT_SIZE = 1000


def _operation(rng: random.Random, value: int) -> tuple[str, int, int] | None:
    """One operation on ``value``: (symbol, constant, result), or None if none fits."""
    options = []
    if value + 2 <= MAX_COUNT:
        options.append("+")
    if value > 2:
        options.append("-")
    if 2 * value <= MAX_COUNT:
        options.append("*")
    if any(value % c == 0 for c in (2, 3, 4, 5)):
        options.append("/")
    if not options:
        return None
    op = rng.choice(options)
    if op == "+":
        c = rng.randint(2, min(20, MAX_COUNT - value))
        return op, c, value + c
    if op == "-":
        c = rng.randint(1, min(20, value - 1))
        return op, c, value - c
    if op == "*":
        c = rng.randint(2, max(2, min(5, MAX_COUNT // value)))
        return op, c, value * c
    c = rng.choice([c for c in (2, 3, 4, 5) if value % c == 0])
    return op, c, value // c


_PHRASES = {
    "+": "{who} has {c} more {item} than {of}.",
    "-": "{who} has {c} fewer {item} than {of}.",
    "*": "{who} has {c} times as many {item} as {of}.",
    "/": "{who} has {frac} as many {item} as {of}.",
}
_FRACTIONS = {2: "half", 3: "a third", 4: "a quarter", 5: "a fifth"}


def generate_problem(rng: random.Random, ops: int) -> tuple[str, str, int]:
    """``(question, worked answer, answer)`` of a chain of ``ops`` operations."""
    if not isinstance(ops, int) or ops < 1:
        raise TaskError(f"wordproblems: ops must be a positive integer, got {ops!r}")
    for _ in range(1000):
        people = rng.sample(NAMES, ops + 1)
        item = rng.choice(ITEMS)
        value = rng.randint(2, 20)
        sentences = [f"{people[0]} has {value} {item}."]
        lines = []
        ok = True
        for k in range(ops):
            step = _operation(rng, value)
            if step is None:
                ok = False
                break
            op, c, result = step
            sentences.append(_PHRASES[op].format(who=people[k + 1], c=c, item=item, of=people[k],
                                                 frac=_FRACTIONS.get(c, "")))
            sign = {"+": "+", "-": "-", "*": "*", "/": "/"}[op]
            lines.append(f"{people[k + 1]} has {value}{sign}{c} = <<{value}{sign}{c}={result}>>{result} {item}.")
            value = result
        if ok:
            question = " ".join(sentences) + f" How many {item} does {people[-1]} have?"
            return question, "\n".join(lines) + f"\n#### {value}", value
    raise TaskError(f"wordproblems: could not generate a problem with {ops} operations")  # pragma: no cover


class WordProblemsTask(GSM8KTask):
    """Synthetic GSM8K-format word problems (module docstring).

    Options:
        max_ops: problems have 1..max_ops operations, uniformly (default 3).
        min_ops: the fewest operations (default 1); ``min_ops = max_ops`` fixes the difficulty.
        test_size, validation_size: sizes of the generated splits (default 1000 each).
        shots: few-shot exemplars from the training stream (default 0).
    """

    name = "wordproblems"
    has_verifier = False
    splits = ("train", "validation", "test")

    def __init__(self, max_ops: int = 3, min_ops: int = 1, test_size: int = DEFAULT_SPLIT_SIZE,
                 validation_size: int = DEFAULT_SPLIT_SIZE, shots: int = 0) -> None:
        for key, val, lo in (("max_ops", max_ops, 1), ("min_ops", min_ops, 1), ("test_size", test_size, 0),
                             ("validation_size", validation_size, 0), ("shots", shots, 0)):
            if not isinstance(val, int) or isinstance(val, bool) or val < lo:
                raise TaskError(f"wordproblems option {key} must be an integer >= {lo}, got {val!r}")
        if min_ops > max_ops or max_ops > 12:
            raise TaskError(f"wordproblems: want 1 <= min_ops <= max_ops <= 12, got {min_ops}..{max_ops}")
        if shots > 16:
            raise TaskError(f"wordproblems option shots must be at most 16, got {shots}")
        Task.__init__(self, max_ops=max_ops, min_ops=min_ops, test_size=test_size, validation_size=validation_size,
                      shots=shots, calculator_annotations=True)
        self._cache: dict[str, list[Problem]] = {}
        self._exemplars: list[Problem] | None = None

    # -- data ---------------------------------------------------------------
    @property
    def _key(self) -> str:
        return f"ops={self.options['min_ops']}-{self.options['max_ops']}"

    def _stream(self, tag: str) -> Iterator[Problem]:
        rng = random.Random(f"sdtt-wordproblems|{tag}|{self._key}")
        i = 0
        while True:
            ops = rng.randint(self.options["min_ops"], self.options["max_ops"])
            question, worked, answer = generate_problem(rng, ops)
            yield Problem(id=f"wordproblems-{tag.split('|')[0]}-{i:06d}", prompt=question, reference=str(answer),
                          meta={"answer": worked, "ops": ops})
            i += 1

    def _generate(self, split: str, exclude: set[str]) -> list[Problem]:
        size = self.options[f"{split}_size"]
        out: list[Problem] = []
        seen = set(exclude)
        for problem in self._stream(split):
            if len(out) >= size:
                break
            if problem.prompt not in seen:
                seen.add(problem.prompt)
                out.append(Problem(id=f"wordproblems-{split}-{len(out):06d}", prompt=problem.prompt,
                                   reference=problem.reference, meta=problem.meta))
        return out

    def problems(self, split: str = "test", limit: int | None = None) -> list[Problem]:
        self._check_split(split)
        self._check_limit(limit)
        if split == "train":
            raise TaskError("wordproblems has no fixed train split; use train_examples(seed) for a stream")
        if split not in self._cache:
            exclude = set() if split == "test" else {p.prompt for p in self.problems("test")}
            self._cache[split] = self._generate(split, exclude)
        return list(self._cache[split][:limit])

    def _held_out(self) -> set[str]:
        return {p.prompt for split in ("test", "validation") for p in self.problems(split)}

    def train_examples(self, seed: int = 0) -> Iterator[tuple[str, str]]:
        """Fresh problems forever, none equal to a test or validation problem."""
        held = self._held_out()
        for problem in self._stream(f"train|{seed}"):
            if problem.prompt not in held:
                yield self.format_prompt(problem), self.format_target(problem)

    def exemplars(self) -> list[Problem]:
        """``shots + 1`` problems of a fixed training stream (never held-out ones)."""
        if self._exemplars is None:
            held = self._held_out() if self.options["shots"] else set()
            stream = (p for p in self._stream("fewshot") if p.prompt not in held)
            self._exemplars = [next(stream) for _ in range(self.options["shots"] + 1)] if self.options["shots"] else []
        return self._exemplars
