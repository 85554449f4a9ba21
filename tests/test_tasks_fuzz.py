"""Hostile text and property-based fuzzing of every parser of model output.

Each parser must return None/False (never raise, never hang, never run code)
and each call must return within 50 ms. 10 000 hypothesis cases per parser.
Time is the calling thread's CPU time, so that other processes on a loaded
machine cannot fail the test while a parser that loops or blows up still does.
"""

from __future__ import annotations

import gc
import re
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks import Problem, load_task
from tasks.mathverify import MAX_BOXED_CHARS, boxed_equals, last_boxed
from tasks.numbers import normalize_number
from tasks.safe_arith import parse_equations

LIMIT_S = 0.050
REPO = Path(__file__).resolve().parents[1]

HOSTILE = [
    "__import__('os').system('x')",
    "__import__('os').system('x')=50",
    "9**9**9**9",
    "9**9**9**9=1,2+3=5",
    "10^10^10",
    "#### 10^10^10",
    "#### 9**9**9**9",
    "\\boxed{10^10^10}",
    "\\boxed{9^{9^{9^{9}}}}",
    "\\boxed{9**9**9**9}",
    "\\boxed{__import__('os').system('x')}",
    "\\boxed{\\binom{100000000}{50000000}}",
    "\\boxed{100000000!}",
    "\\boxed{" + "{" * 10_000 + "}" * 10_000,
    "\\boxed{" * 10_000,
    "(" * 10_000 + "1" + ")" * 10_000,
    "(" * 10_000,
    "[" * 10_000 + "]" * 10_000,
    "1" * 1_000_000,
    "x" * 1_000_000,
    "44-15=29," * 120_000,
    "#### " + "9" * 1_000_000,
    "1,2,3" * 200_000,
    "\\boxed{18}" * 100_000,
    "\x00" * 1000,
    "44-15=29\x00,79-29=50",
    "#### 18\x00",
    "٤٤-١٥=٢٩,٧٩-٢٩=٥٠",
    "４４-１５=２９,７９-２９=５０",
    "#### ١٨",
    "#### １８",
    "\\boxed{１８}",
    "".join(chr(0x660 + i % 10) for i in range(81)),
    "".join(chr(0xFF11 + i % 9) for i in range(81)),
    "1e999999999",
    "#### 1e999999999",
    "\\boxed{1e999999999}",
    "\\boxed{" + "9" * 10_000 + "}",
    "9" * 32_000,  # just under gsm8k's MAX_TEXT_CHARS: read, so a quadratic regex shows
    "-" * 100_000 + "1",
    "." * 100_000,
    "$" * 100_000,
    "\ud800\udfff",
    "\\boxed{\\frac{1}{0}}",
    "\\boxed{\\frac{" * 500,
]


def _data_dir() -> Path:
    env = os.environ.get("SDTT_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "gsm8k"


@pytest.fixture(scope="module")
def parsers():
    """name -> callable(text); one per parser of model output."""
    cd = load_task("countdown", n=3, test_size=1)
    cdp = Problem(id="t", prompt="15,44,79,50", reference="44-15=29,79-29=50", meta={})
    gsm = load_task("gsm8k", path=_data_dir())
    g18 = Problem(id="t", prompt="q", reference="18")
    s4, s6, s9 = (load_task("sudoku", size=size, test_size=1) for size in (4, 6, 9))
    p4, p6, p9 = s4.problems("test")[0], s6.problems("test")[0], s9.problems("test")[0]
    _warm_math_verify()  # import math-verify and fill sympy's caches before timing anything
    return {
        "safe_arith.parse_equations": parse_equations,
        "countdown.verify": lambda t: cd.verify(cdp, t),
        "countdown.extract_answer": cd.extract_answer,
        "numbers.normalize_number": normalize_number,
        "gsm8k.extract_answer": gsm.extract_answer,
        "gsm8k.score": lambda t: gsm.score(g18, t),
        "gsm8k.is_correct": lambda t: gsm.is_correct(g18, t),
        "sudoku4.verify": lambda t: s4.verify(p4, t) or s4.is_correct(p4, t) or s4.extract_answer(t),
        "sudoku6.verify": lambda t: s6.verify(p6, t) or s6.is_correct(p6, t) or s6.extract_answer(t),
        "sudoku9.verify": lambda t: s9.verify(p9, t) or s9.is_correct(p9, t) or s9.extract_answer(t),
        "sudoku4.score": lambda t: s4.score(p4, t)["cell_accuracy"] > 0,  # hostile text fills no cell
    }


def _check_gsm8k_output(name, out):
    if name == "gsm8k.extract_answer":
        # a normalised number, or a fraction p/q that math-verify read from a box
        assert out is None or (isinstance(out, str) and out.isascii()
                               and (normalize_number(out) == out or re.fullmatch(r"-?[0-9]+/[0-9]+", out)))
    elif name == "gsm8k.score":
        assert set(out) == {"strict", "flexible", "numeric"} and all(isinstance(v, bool) for v in out.values())
    else:
        assert isinstance(out, bool)


def _timed_once(fn, *args):
    gc.disable()
    try:
        t0 = time.thread_time()
        out = fn(*args)
        return out, time.thread_time() - t0
    finally:
        gc.enable()


def _timed(fn, *args):
    """(fn(*args), CPU seconds it took). The garbage collector is paused during the
    call: a collection pays for the whole test process's heap, not for the parser. A
    call over ``LIMIT_S`` is timed once more and the smaller time kept: a bounded
    parser is bounded on every call, while a one-off cache fill inside sympy (seen
    under CI load at 48-64 ms) is not the parser's cost per input."""
    out, dt = _timed_once(fn, *args)
    if dt >= LIMIT_S:
        again, dt2 = _timed_once(fn, *args)
        assert again == out  # the parsers are deterministic
        dt = min(dt, dt2)
    return out, dt


def test_hostile_inputs_every_parser(parsers, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("model text ran code")

    monkeypatch.setattr(os, "system", boom)
    for text in HOSTILE:
        for name, fn in parsers.items():
            out, dt = _timed(fn, text)
            assert dt < LIMIT_S, (name, text[:40], dt)
            if name.startswith("gsm8k"):
                # the gsm8k readers legitimately find numbers in some of these
                # (the last number of "...=50" is 50); they must stay bounded
                _check_gsm8k_output(name, out)
            else:
                assert out in (None, False), (name, text[:40], out)


def test_hostile_boxed_never_reaches_math_verify_unsafely():
    for content in ("9^{9^{9^{9}}}", "10^10^10", "9**9**9**9", "100000000!", "\\binom{10^8}{5}",
                    "__import__('os').system('x')", "x" * (MAX_BOXED_CHARS + 1), "\x00", "１８"):
        out, dt = _timed(boxed_equals, content, "18")
        assert out is False
        assert dt < LIMIT_S
    assert last_boxed("\\boxed{" + "{" * 20 + "}" * 21) is None  # too deep
    assert last_boxed("\\boxed{" + "1" * (MAX_BOXED_CHARS + 5) + "}") is None  # too long


# text mixing the characters parsers care about with arbitrary unicode
_ALPHABET = list("0123456789+-*/=,.$# \n()[]{}^\\!") + ["####", "\\boxed{", "\\frac", "٣", "３", "\x00", "e", "**"]
TEXT = st.one_of(
    st.lists(st.sampled_from(_ALPHABET), max_size=60).map("".join),
    st.text(max_size=80),
    st.lists(st.one_of(st.sampled_from(_ALPHABET), st.text(max_size=3)), max_size=40).map("".join),
)
# near-valid countdown solutions: "a op b=c" pieces with random numbers
EQUATION = st.builds(
    lambda a, op, b, c, sep: f"{a}{op}{b}={c}{sep}",
    st.integers(0, 120), st.sampled_from("+-*/"), st.integers(0, 120), st.integers(-5, 10_000),
    st.sampled_from([",", "\n", " , ", ""]),
)
EQUATIONS = st.lists(st.one_of(EQUATION, st.just("44-15=29,"), st.just("79-29=50")), max_size=6).map("".join)
GRID = st.lists(st.sampled_from("0123456789 \n"), min_size=10, max_size=100).map("".join)

FUZZ = settings(max_examples=10_000, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(text=st.one_of(TEXT, EQUATIONS, GRID))
def test_fuzz_all_parsers(parsers, text):
    """10 000 cases, each given to every parser (so >= 10 000 per parser)."""
    for name, fn in parsers.items():
        out, dt = _timed(fn, text)
        assert dt < LIMIT_S, (name, text, dt)
        if name == "countdown.verify":
            assert isinstance(out, bool)
        elif name == "countdown.extract_answer":
            assert out is None or (isinstance(out, str) and out.isascii())
        elif name.startswith("gsm8k"):
            _check_gsm8k_output(name, out)


_WARM = []


def _warm_math_verify():
    """First calls import math-verify/sympy and fill their caches: not timed."""
    if not _WARM:
        # (constants such as e, E, i and pi, and a first division by zero (48 ms cold, 1 ms
        # warm), fill sympy's caches on first use too)
        for c in ("1", "x", "DC", "a b", "\\frac{1}{2}", "1.5", "\\text{a}", "1+x*y/2", "-3", "1,000", "(1)", "{1}",
                  "e", "E", "i", "\\pi", "\\infty", "2e", "e^2", "\\frac{1}{0}"):
            boxed_equals(c, "18")
        _WARM.append(True)


@settings(max_examples=1_000, deadline=None, derandomize=True)
@given(content=st.one_of(st.lists(st.sampled_from(list("0123456789+-*/.,{}^ ") + ["\\frac", "\\dfrac", "\\text{", "\\cdot"]),
                                  max_size=30).map("".join), st.text(max_size=30)))
def test_fuzz_boxed_math_verify_path(content):
    """The math-verify path is slower, so fewer cases; inputs are bounded before it."""
    _warm_math_verify()
    text = "so \\boxed{" + content + "}"
    out, dt = _timed(boxed_equals, last_boxed(text) or "", "18")
    assert isinstance(out, bool)
    assert dt < LIMIT_S, content
