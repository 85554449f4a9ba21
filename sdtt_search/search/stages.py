"""The stages of a cascade, over problem results only (no models, no executor).

What each stage drew for a problem is merged into one ``ProblemResult``
(``merge_stage``); a stage *accepts* a problem when its ``StopRule`` holds on its own
candidates (``accepts``); ``run_stages`` passes the problems no stage accepted on to
the next. ``cascade.Cascade`` runs the stages in-process, the Ray executor on its
actors, and ``report.summarise_cascade`` reads the merged results: all three use this
module, which uses none of them (docs/architecture.md, "Import layering").
"""
from __future__ import annotations

from typing import Callable, Sequence

from .results import Candidate, ProblemResult
from .select import SELECTORS
from .stopping import StopRule

#: ``take(index, result)``: a stage's result for the problem at ``index`` of the list it was given
Take = Callable[[int, ProblemResult], None]
#: ``draw(stage, problems, take)``: run stage ``stage`` over ``problems``, calling ``take`` once per problem
#: (in any order)
Draw = Callable[[int, list, Take], None]


def merge_stage(so_far: ProblemResult | None, result: ProblemResult, stage: int, stages: int) -> ProblemResult:
    """``result`` (what stage ``stage`` of ``stages`` drew for a problem) appended to what the
    earlier stages drew for it (``so_far``; None before the first); selections are left to
    ``select``."""
    if so_far is None:
        so_far = ProblemResult(id=result.id, prompt=result.prompt, reference=result.reference, candidates=[],
                               stage_samples=[0] * stages, stage_seconds=[0.0] * stages)
    so_far.candidates += result.candidates
    so_far.nfe += result.nfe
    so_far.tokens += result.tokens
    so_far.positions += result.positions
    so_far.seconds += result.seconds
    for field in ("repair", "particles"):  # a stage that repairs, or runs particle search
        spent = getattr(result, field)
        if spent is not None:
            setattr(so_far, field, {key: (getattr(so_far, field) or {}).get(key, 0) + value
                                    for key, value in spent.items()})
    so_far.stage_samples[stage] = len(result.candidates)
    so_far.stage_seconds[stage] = result.seconds
    return so_far


def stage_candidates(result: ProblemResult, stage: int) -> list[Candidate]:
    """The candidates stage ``stage`` drew for a merged problem result."""
    lo = sum(result.stage_samples[:stage])
    return result.candidates[lo : lo + result.stage_samples[stage]]


def accepts(rule: StopRule, candidates: Sequence[Candidate]) -> bool:
    """Whether a stage with ``rule`` keeps a problem it drew ``candidates`` for (``cascade``'s module)."""
    return len(candidates) > 0 and rule.done(candidates, 0)


def select(result: ProblemResult, answering: Sequence[Candidate], rewarded: bool = False) -> ProblemResult:
    """The selections over the answering stage's candidates (``reward`` only when every stage had a reward model)."""
    result.selected = {name: pick(list(answering)) for name, pick in SELECTORS.items()
                       if name != "reward" or rewarded}
    return result


def run_stages(problems: Sequence, rules: Sequence[StopRule], draw: Draw, emit: Take, *,
               rewarded: bool = False) -> None:
    """Pass ``problems`` through the stages of ``rules`` in order.

    Stage s draws (``draw(s, open problems, take)``) for the problems no stage before it
    accepted. A problem is finished, merged over its stages with the selections of its
    answering stage, and handed to ``emit(index in problems, result)`` as soon as a stage
    accepts it or when the last stage has drawn for it: the one rule of the in-process and
    the Ray cascades.
    """
    problems = list(problems)
    merged: dict[int, ProblemResult] = {}
    open_ = list(range(len(problems)))
    for s, rule in enumerate(rules):
        if not open_:
            break
        last = s == len(rules) - 1
        left: list[int] = []

        def take(j: int, result: ProblemResult, s: int = s, rule: StopRule = rule, last: bool = last,
                 open_: list[int] = open_, left: list[int] = left) -> None:
            p = open_[j]
            merged[p] = merge_stage(merged.get(p), result, s, len(rules))
            if last or accepts(rule, result.candidates):
                emit(p, select(merged.pop(p), result.candidates, rewarded))
            else:
                left.append(p)

        draw(s, [problems[p] for p in open_], take)
        open_ = sorted(left)
