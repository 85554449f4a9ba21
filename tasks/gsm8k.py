"""GSM8K: grade-school math word problems with a numeric final answer.

Data: ``path=`` (a directory with ``train.jsonl``/``test.jsonl``, or one with a
``gsm8k/`` subdirectory holding them, or a single jsonl file of
``{"question", "answer"}`` records served for every split), else the env var ``SDTT_DATA_DIR`` (same
layout), else Hugging Face ``datasets.load_dataset("openai/gsm8k", "main")``
when ``datasets`` is installed, else a one-line :class:`TaskError`.

Three readings of a model's output, all cut first at lm-eval's stop sequences
(``Question:``, ``</s>``, ``<|im_end|>``), all bounded (output over
:data:`MAX_TEXT_CHARS` characters is scored wrong), reported by
:meth:`GSM8KTask.score`:

* ``strict`` and ``flexible``: lm-evaluation-harness 0.4's ``strict-match`` and
  ``flexible-extract`` decisions, exactly (:mod:`tasks.gsm8k_lm_eval`): ``#### 18.0``
  is wrong for 18 there, as in every published lm-eval GSM8K number;
* ``numeric`` (:meth:`GSM8KTask.is_correct`, the ``correct`` of every candidate):
  dash characters used as minus (U+2212 and the other dashes) read as ``-``; then
  the first ``#### N`` decides if there is one; else the last ``\\boxed{...}``
  decides if there is one (a plain number, or an expression math-verify finds equal
  to the gold: ``\\boxed{\\frac{36}{2}}`` is 18, ``\\boxed{1 + 2125}`` is not 2125, and
  a box is never read past); else the last number of the text. Numbers are compared
  by value (``18.0`` == ``018`` == ``18``, ``$1,000`` == ``1000``).

:meth:`GSM8KTask.extract_answer` (the voting key) is the ``numeric`` reading's
number. There is no gold-free verifier (:meth:`GSM8KTask.verify` returns None).
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from .base import Problem, Task
from .errors import TaskError
from .jsonl import read_jsonl
from .gsm8k_lm_eval import MAX_TEXT_CHARS as LM_EVAL_MAX_CHARS
from .gsm8k_lm_eval import cut_at_stop, lm_eval_decisions
from .mathverify import boxed_equals, boxed_value, has_boxed, last_boxed
from .numbers import normalize_number
from .partial import CONSISTENT, UNKNOWN_VERDICT, VIOLATED, PartialVerdict, committed_runs, evaluate_expression, well_formed

#: longer model outputs are not read at all, and scored wrong (no genuine answer is this long)
MAX_TEXT_CHARS = LM_EVAL_MAX_CHARS
HF_NAME, HF_CONFIG = "openai/gsm8k", "main"

_HASH_RE = re.compile(r"#### (\-?[0-9\.\,]+)", re.ASCII)
_NUMBER_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", re.ASCII)
_CALC_RE = re.compile(r"<<[^<>]*>>")
#: characters a model may write for a minus sign: U+2010-2015 (hyphens, figure dash,
#: en and em dash, bar), U+2212 (minus sign), U+FE58, U+FE63, U+FF0D (small and fullwidth forms)
_DASHES = str.maketrans({ch: "-" for ch in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"})


def normalise_minus(text: str) -> str:
    """Every dash character used as a minus sign written as ASCII ``-``."""
    return text.translate(_DASHES)


def hash_number(text: str) -> str | None:
    """The first ``#### N``'s number, normalised (``#### 18.0`` -> ``"18"``); None if absent."""
    m = _HASH_RE.search(text)
    return normalize_number(m.group(1)) if m else None


def last_number(text: str) -> str | None:
    """The last number of the text, normalised; None if it has none."""
    last = None
    for last in _NUMBER_RE.finditer(text):
        pass
    return None if last is None else normalize_number(last.group(1) or last.group(2))


def boxed_number(content: str) -> str | None:
    """A ``\\boxed{}`` content's value as a normalised number: a plain number (``\\$``,
    ``\\%``, ``\\!``, ``\\,``, ``\\text{...}`` and spaces ignored), else a number
    math-verify parses it to (``\\frac{36}{2}`` -> ``"18"``); else None."""
    plain = normalize_number(re.sub(r"\\[$%!,; ]|\\text\{[^{}]*\}|[ %]", "", content))
    return plain if plain is not None else boxed_value(content)


def numeric_reading(text: object) -> tuple[str | None, str | None]:
    """``(number, box)``: the ``numeric`` reading of a model output (module docstring).

    ``box`` is the content of the box that decided (None when no box decided, or the
    box could not be read: unbalanced, too long, too deep); ``number`` its value or
    the ``#### N`` / last number, normalised, None when there is none."""
    if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
        return None, None
    text = normalise_minus(cut_at_stop(text))
    number = hash_number(text)
    if number is not None:
        return number, None
    if has_boxed(text):  # a box decides: never read past it
        content = last_boxed(text)
        return (None, None) if content is None else (boxed_number(content), content)
    return last_number(text), None


_ANNOTATION_RE = re.compile(r"<<([^<>=]{1,80})=([^<>=]{1,40})>>")


def check_annotations(pieces: Sequence[str | None]) -> PartialVerdict:
    """Check the calculator annotations ``<<expr=result>>`` committed in a partly decoded
    worked answer (see :mod:`tasks.partial`): violated when an annotation lying wholly in
    committed text has a result that is not its expression's exact value (blame: its
    positions). Unreadable expressions are skipped. Never raises."""
    try:
        if not well_formed(pieces):
            return UNKNOWN_VERDICT
        checked = False
        for run in committed_runs(pieces):
            for m in _ANNOTATION_RE.finditer(run.text):
                left, right = evaluate_expression(m.group(1)), evaluate_expression(m.group(2))
                if left is None or right is None:
                    continue
                if left != right:
                    return PartialVerdict(VIOLATED, run.positions(m.start(), m.end()),
                                          f"<<{m.group(1)}={m.group(2)}>> is wrong")
                checked = True
        return PartialVerdict(CONSISTENT) if checked else UNKNOWN_VERDICT
    except Exception:  # pragma: no cover - defensive: a checker never raises
        return UNKNOWN_VERDICT


def reference_from_answer(answer: str) -> str:
    """The final answer after the last ``####`` of a worked solution, commas removed."""
    return answer.rsplit("####", 1)[-1].strip().replace(",", "")


def strip_calculator_annotations(answer: str) -> str:
    """``"4 = <<2*2=4>>4"`` -> ``"4 = 4"``."""
    return _CALC_RE.sub("", answer)


class GSM8KTask(Task):
    """GSM8K with lm-eval style answer extraction.

    Options:
        path: data directory (see module docstring). Default: ``$SDTT_DATA_DIR``.
        shots: number of few-shot exemplars in the prompt (default 0).
        seed: seed that picks the exemplars from train (default 1234).
        calculator_annotations: keep ``<<expr=result>>`` in targets and
            exemplars (default False: stripped, shorter for small models).
    """

    name = "gsm8k"
    has_verifier = False
    splits = ("train", "test")

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        shots: int = 0,
        seed: int = 1234,
        calculator_annotations: bool = False,
    ) -> None:
        if not isinstance(shots, int) or isinstance(shots, bool) or not 0 <= shots <= 64:
            raise TaskError(f"gsm8k option shots must be an integer in 0..64, got {shots!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TaskError(f"gsm8k option seed must be an integer, got {seed!r}")
        super().__init__(
            path=None if path is None else str(path),
            shots=shots,
            seed=seed,
            calculator_annotations=bool(calculator_annotations),
        )
        self._file = Path(path) if path is not None and Path(path).is_file() else None
        self._dir = None if self._file is not None else self._locate(path)
        self._cache: dict[str, list[Problem]] = {}
        self._exemplars: list[Problem] | None = None

    # -- data ---------------------------------------------------------------
    @staticmethod
    def _find_dir(base: Path) -> Path | None:
        for d in (base, base / "gsm8k"):
            if (d / "test.jsonl").is_file() or (d / "train.jsonl").is_file():
                return d
        return None

    def _locate(self, path: str | os.PathLike[str] | None) -> Path | None:
        """The data directory, or None to use Hugging Face ``datasets``."""
        looked: list[str] = []
        if path is not None:
            found = self._find_dir(Path(path))
            if found is None:
                raise TaskError(
                    f"gsm8k data not found: no train.jsonl/test.jsonl in {path} or {Path(path) / 'gsm8k'}; "
                    "pass path=/dir/with/train.jsonl or set SDTT_DATA_DIR"
                )
            return found
        env = os.environ.get("SDTT_DATA_DIR")
        if env:
            found = self._find_dir(Path(env))
            if found is not None:
                return found
            looked.append(f"SDTT_DATA_DIR={env} (and its gsm8k/)")
        else:
            looked.append("SDTT_DATA_DIR (unset)")
        try:
            import importlib.util

            if importlib.util.find_spec("datasets") is not None:
                return None
        except (ImportError, ValueError):
            pass
        looked.append(f"Hugging Face datasets {HF_NAME} (package 'datasets' not installed)")
        raise TaskError(
            f"gsm8k data not found; looked in: {'; '.join(looked)}; "
            "pass path=/dir/with/train.jsonl or set SDTT_DATA_DIR"
        )

    def _records(self, split: str) -> list[dict[str, Any]]:
        if self._file is not None:
            return [rec for _, rec in read_jsonl(self._file, required=("question", "answer"))]
        if self._dir is not None:
            file = self._dir / f"{split}.jsonl"
            if not file.is_file():
                raise TaskError(f"gsm8k: no {split} split at {file}; pass path=/dir/with/{split}.jsonl")
            return [rec for _, rec in read_jsonl(file, required=("question", "answer"))]
        try:  # pragma: no cover - needs the network and the `datasets` package
            import datasets  # type: ignore[import-not-found]

            ds = datasets.load_dataset(HF_NAME, HF_CONFIG, split=split)
            return [{"question": r["question"], "answer": r["answer"]} for r in ds]
        except Exception as exc:  # pragma: no cover
            raise TaskError(
                f"gsm8k data not found: loading {HF_NAME} through datasets failed ({type(exc).__name__}); "
                "pass path=/dir/with/train.jsonl or set SDTT_DATA_DIR"
            ) from None

    def problems(self, split: str = "test", limit: int | None = None) -> list[Problem]:
        self._check_split(split)
        self._check_limit(limit)
        if split not in self._cache:
            width = 4
            self._cache[split] = [
                Problem(
                    id=f"gsm8k-{split}-{i:0{width}d}",
                    prompt=rec["question"],
                    reference=reference_from_answer(rec["answer"]),
                    meta={"answer": rec["answer"]},
                )
                for i, rec in enumerate(self._records(split))
            ]
        return list(self._cache[split][:limit])

    def train_examples(self, seed: int = 0) -> Iterator[tuple[str, str]]:
        """Shuffled epochs over the train split, forever."""
        train = self.problems("train")
        if not train:
            raise TaskError("gsm8k: the train split is empty")
        rng = random.Random(f"sdtt-gsm8k|train|{seed}")
        order = list(range(len(train)))
        while True:
            rng.shuffle(order)
            for i in order:
                yield self.format_prompt(train[i]), self.format_target(train[i])

    # -- formatting ---------------------------------------------------------
    def _answer_text(self, problem: Problem) -> str:
        answer = str(problem.meta.get("answer", f"#### {problem.reference}"))
        return answer if self.options["calculator_annotations"] else strip_calculator_annotations(answer)

    def exemplars(self) -> list[Problem]:
        """``shots + 1`` train problems picked with ``random.Random(seed)`` (fixed
        per instance); a prompt uses the first ``shots`` that are not itself."""
        if self._exemplars is None:
            k = self.options["shots"]
            if k == 0:
                self._exemplars = []
            else:
                train = self.problems("train")
                rng = random.Random(f"sdtt-gsm8k|fewshot|{self.options['seed']}")
                self._exemplars = [train[i] for i in rng.sample(range(len(train)), min(k + 1, len(train)))]
        return self._exemplars

    def format_prompt(self, problem: Problem) -> str:
        """Zero-shot ``"Question: {q}\\nAnswer:"``; k-shot prepends exemplars as
        ``"Question: {q}\\nAnswer: {worked answer}\\n\\n"`` (lm-eval style)."""
        parts = []
        if self.options["shots"]:
            shots = [e for e in self.exemplars() if e.prompt != problem.prompt][: self.options["shots"]]
            parts = [f"Question: {e.prompt}\nAnswer: {self._answer_text(e)}\n\n" for e in shots]
        return "".join(parts) + f"Question: {problem.prompt}\nAnswer:"

    def format_target(self, problem: Problem) -> str:
        """The worked answer ending in ``#### N`` (annotations stripped by default).
        It follows the prompt after one space, as in lm-eval."""
        return self._answer_text(problem)

    # -- reading model output -----------------------------------------------
    def extract_answer(self, text: str) -> str | None:
        """The ``numeric`` reading's number (module docstring): the voting key."""
        try:
            return numeric_reading(text)[0]
        except Exception:  # pragma: no cover - defensive
            return None

    def score(self, problem: Problem, text: str) -> dict[str, bool]:
        """``{"strict", "flexible", "numeric"}``: lm-eval's ``strict-match`` and
        ``flexible-extract`` decisions (exactly) and this package's ``numeric`` reading."""
        gold = str(problem.meta.get("answer", problem.reference))
        return {**lm_eval_decisions(text, gold), "numeric": self.is_correct(problem, text)}

    def is_correct(self, problem: Problem, text: str) -> bool:
        """The ``numeric`` reading: its number equals the reference, or the box that
        decided is equal to it according to math-verify."""
        try:
            ref = normalize_number(normalise_minus(problem.reference))
            if ref is None:
                return False
            number, box = numeric_reading(text)
            return number == ref or (box is not None and boxed_equals(normalise_minus(box), ref))
        except Exception:  # pragma: no cover
            return False

    def partial_check(self, problem: Problem, pieces: Sequence[str | None], ended: bool = False) -> PartialVerdict:
        """The committed calculator annotations (:func:`check_annotations`)."""
        return check_annotations(pieces)

    def verify(self, problem: Problem, text: str) -> None:
        """GSM8K has no gold-free check."""
        return None
