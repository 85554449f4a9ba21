"""lm-evaluation-harness 0.4's ``gsm8k`` decisions, reproduced exactly.

The task file of lm-eval (``lm_eval/tasks/gsm8k/gsm8k.yaml``) scores a generation in
four steps, and each is mirrored here:

1. the generation is cut before the first of its stop sequences
   (``generation_kwargs.until``: ``Question:``, ``</s>``, ``<|im_end|>``);
2. a filter extracts a string: ``strict-match`` takes the *first* match of
   ``#### (\\-?[0-9\\.\\,]+)``, ``flexible-extract`` the *last* match
   (``group_select: -1``) of ``(-?[$0-9.,]{2,})|(-?[0-9]+)`` (its first non-empty
   group), stripped; no match gives ``[invalid]``;
3. ``exact_match`` removes the ``regexes_to_ignore`` (``,``, ``$``, everything up to
   the last ``#### ``, a final ``.``) from both the extracted string and the gold
   worked answer, in that order, then lower-cases both (``ignore_case``);
4. the two strings must be equal: ``#### 18.0`` or ``#### 018`` is *wrong* for 18,
   and a Unicode minus is not a minus (``−5`` reads as ``5``).

``tests/test_tasks_gsm8k_lm_eval.py`` compares these decisions with lm-eval's own
filters and metric, built from its installed YAML, on over a thousand outputs.

The one difference: a generation longer than :data:`MAX_TEXT_CHARS` characters is
scored wrong without being read (every parser of this package is bounded; no
GSM8K answer is that long).
"""

from __future__ import annotations

import re

#: longer generations are scored wrong without being read
MAX_TEXT_CHARS = 32_768
#: lm-eval's ``generation_kwargs.until`` for gsm8k
STOP_SEQUENCES = ("Question:", "</s>", "<|im_end|>")
STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
#: ``exact_match``'s ``regexes_to_ignore``, in lm-eval's order: ``,``, ``\$``,
#: ``(?s).*#### `` and ``\.$``. The third is applied by :func:`_cut_through_last_marker`:
#: run as a regex it backtracks quadratically (28 ms on 10 000 digits without a marker)
IGNORE_PATTERNS = (",", r"\$", r"(?s).*#### ", r"\.$")
_COMMA_RE, _DOLLAR_RE, _FINAL_DOT_RE = re.compile(","), re.compile(r"\$"), re.compile(r"\.$")
_MARKER = "#### "
INVALID = "[invalid]"


def cut_at_stop(text: str, stops: tuple[str, ...] = STOP_SEQUENCES) -> str:
    """The text before the first occurrence of each stop sequence, in turn (as
    lm-eval's ``postprocess_generated_text``)."""
    for stop in stops:
        if stop:
            text = text.split(stop)[0]
    return text


def strict_match(text: str) -> str:
    """lm-eval's ``strict-match`` filter: the first ``#### N``'s N, or ``[invalid]``."""
    m = STRICT_RE.search(text)
    return m.group(1).strip() if m else INVALID


def flexible_extract(text: str) -> str:
    """lm-eval's ``flexible-extract`` filter: the last number-like run, or ``[invalid]``."""
    last = None
    for last in FLEXIBLE_RE.finditer(text):
        pass
    if last is None:
        return INVALID
    group = last.group(1) or last.group(2)
    return group.strip() if group else INVALID


def _cut_through_last_marker(text: str) -> str:
    """``re.sub(r"(?s).*#### ", "", text)`` in linear time: the greedy ``.*`` reaches
    the last marker, and nothing after it can match again."""
    at = text.rfind(_MARKER)
    return text if at < 0 else text[at + len(_MARKER):]


def _ignore(text: str) -> str:
    text = _DOLLAR_RE.sub("", _COMMA_RE.sub("", text))
    text = _cut_through_last_marker(text)
    return _FINAL_DOT_RE.sub("", text).lower()


def exact_match(prediction: str, gold_answer: str) -> bool:
    """lm-eval's ``exact_match`` with the gsm8k options: ``gold_answer`` is the worked
    answer (``... #### 18``) or the bare final answer."""
    return _ignore(prediction) == _ignore(gold_answer)


def lm_eval_decisions(text: str, gold_answer: str) -> dict[str, bool]:
    """``{"strict": ..., "flexible": ...}``: lm-eval's two gsm8k decisions on one
    generation. Never raises; non-strings and over-long text are wrong."""
    try:
        if not isinstance(text, str) or not isinstance(gold_answer, str) or len(text) > MAX_TEXT_CHARS:
            return {"strict": False, "flexible": False}
        text = cut_at_stop(text)
        return {"strict": exact_match(strict_match(text), gold_answer),
                "flexible": exact_match(flexible_extract(text), gold_answer)}
    except Exception:  # pragma: no cover - defensive
        return {"strict": False, "flexible": False}
