"""GSM8K: grade-school math word problems with a numeric final answer.

Data: ``path=`` (a directory with ``train.jsonl``/``test.jsonl``, or one with a
``gsm8k/`` subdirectory holding them, or a single jsonl file of
``{"question", "answer"}`` records served for every split), else the env var ``SDTT_DATA_DIR`` (same
layout), else Hugging Face ``datasets.load_dataset("openai/gsm8k", "main")``
when ``datasets`` is installed, else a one-line :class:`TaskError`.

Answer extraction follows lm-evaluation-harness, and both of its metrics are
reported by :meth:`GSM8KTask.score`:

* strict-match: the first ``#### N`` (regex ``#### (\\-?[0-9\\.\\,]+)``);
* flexible-extract: the last number in the text
  (regex ``(-?[$0-9.,]{2,})|(-?[0-9]+)``);

then normalised by :func:`tasks.numbers.normalize_number` (commas, ``$`` and
trailing periods removed, ``5.0`` == ``5``, ``-0`` == ``0``).

:meth:`GSM8KTask.extract_answer` (the voting key) is strict-match if present,
else the last ``\\boxed{}`` holding a plain number, else flexible-extract.
:meth:`GSM8KTask.is_correct` is true when that key equals the reference, or
when the last ``\\boxed{}`` is equivalent to it according to math-verify (for
answers such as ``\\frac{36}{2}``). There is no gold-free verifier
(:meth:`GSM8KTask.verify` returns None).
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, Iterator

from .base import Problem, Task
from .errors import TaskError
from .jsonl import read_jsonl
from .mathverify import boxed_equals, last_boxed
from .numbers import normalize_number

#: longer model outputs are not read at all (no genuine answer is this long)
MAX_TEXT_CHARS = 32_768
HF_NAME, HF_CONFIG = "openai/gsm8k", "main"

STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)", re.ASCII)
FLEXIBLE_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", re.ASCII)
_CALC_RE = re.compile(r"<<[^<>]*>>")


def extract_strict(text: str) -> str | None:
    """lm-eval strict-match: the first ``#### N``, normalised; None if absent."""
    try:
        if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
            return None
        m = STRICT_RE.search(text)
        return normalize_number(m.group(1)) if m else None
    except Exception:  # pragma: no cover
        return None


def extract_flexible(text: str) -> str | None:
    """lm-eval flexible-extract: the last number in the text, normalised."""
    try:
        if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
            return None
        last = None
        for m in FLEXIBLE_RE.finditer(text):
            last = m
        if last is None:
            return None
        return normalize_number(last.group(1) or last.group(2))
    except Exception:  # pragma: no cover
        return None


def extract_boxed_number(text: str) -> str | None:
    """The last ``\\boxed{}`` content if it is a plain number (``\\$``, ``\\%``,
    ``\\!``, ``\\,`` and spaces ignored), normalised; else None."""
    content = last_boxed(text)
    if content is None:
        return None
    simple = re.sub(r"\\[$%!,; ]|\\text\{[^{}]*\}|[ %]", "", content)
    return normalize_number(simple)


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
    def extract_strict(self, text: str) -> str | None:
        return extract_strict(text)

    def extract_flexible(self, text: str) -> str | None:
        return extract_flexible(text)

    def extract_answer(self, text: str) -> str | None:
        """Strict ``#### N`` first, else a numeric last ``\\boxed{}``, else the last number."""
        for fn in (extract_strict, extract_boxed_number, extract_flexible):
            ans = fn(text)
            if ans is not None:
                return ans
        return None

    def score(self, problem: Problem, text: str) -> dict[str, bool]:
        """lm-eval's two metrics: ``{"strict": ..., "flexible": ...}``."""
        ref = normalize_number(problem.reference)
        return {
            "strict": ref is not None and extract_strict(text) == ref,
            "flexible": ref is not None and extract_flexible(text) == ref,
        }

    def is_correct(self, problem: Problem, text: str) -> bool:
        """The answer key equals the reference, or the last ``\\boxed{}`` is
        equivalent to it (math-verify)."""
        try:
            ref = normalize_number(problem.reference)
            if ref is None:
                return False
            if self.extract_answer(text) == ref:
                return True
            content = last_boxed(text)
            return content is not None and boxed_equals(content, ref)
        except Exception:  # pragma: no cover
            return False

    def verify(self, problem: Problem, text: str) -> None:
        """GSM8K has no gold-free check."""
        return None
