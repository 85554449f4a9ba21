"""GSM8K's ``strict`` and ``flexible`` are lm-eval's decisions, checked against lm-eval itself.

lm-eval-harness's gsm8k task is rebuilt here from its installed YAML: its stop
sequences (``postprocess_generated_text``), its two filter ensembles
(``build_filter_ensemble`` with the YAML's regexes, ``group_select`` and
``take_first``) and its ``exact_match`` with the YAML's options. Over a thousand
outputs (chain-of-thought endings, every formatting variant that once disagreed,
hostile text, and real outputs of the zoo's GSM8K models) must get the same
decision from :meth:`tasks.gsm8k.GSM8KTask.score` as from lm-eval.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from tasks import Problem, load_task
from tasks.gsm8k_lm_eval import STOP_SEQUENCES

from test_tasks_gsm8k import gsm8k_data_dir

import lm_eval  # a test dependency (the dev extra): missing, these tests fail
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.metrics import exact_match_hf_evaluate  # noqa: E402
from lm_eval.filters import build_filter_ensemble  # noqa: E402
from lm_eval.models.utils import postprocess_generated_text  # noqa: E402

ZOO_OUTPUTS = Path(__file__).parent / "data" / "gsm8k_zoo_outputs.jsonl"


@pytest.fixture(scope="module")
def reference():
    """lm-eval's gsm8k task pieces, from the YAML of the installed lm-eval."""
    config = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml").read_text())
    ensembles = [
        build_filter_ensemble(f["name"], [(step["function"], {k: v for k, v in step.items() if k != "function"})
                                          for step in f["filter"]])
        for f in config["filter_list"]
    ]
    (metric,) = config["metric_list"]
    options = {k: metric[k] for k in ("ignore_case", "ignore_punctuation", "regexes_to_ignore")}
    return config, ensembles, options


def lm_eval_decide(reference, text: str, gold_answer: str) -> dict[str, bool]:
    config, ensembles, options = reference
    generation = postprocess_generated_text(text, config["generation_kwargs"]["until"], None)
    instance = Instance(request_type="generate_until", doc={"answer": gold_answer}, arguments=("", {}), idx=0,
                        resps=[generation])
    out = {}
    for ensemble in ensembles:
        ensemble.apply([instance])
        (pred,) = [instance.filtered_resps[ensemble.name]]
        pred = pred[0] if isinstance(pred, list) else pred
        out[ensemble.name] = exact_match_hf_evaluate([pred], [gold_answer], **options)["exact_match"] == 1.0
    return {"strict": out["strict-match"], "flexible": out["flexible-extract"]}


def _variants(rng: random.Random, gold: str, worked: str, other: str) -> list[str]:
    """Ways a model may end (or mangle) an answer of ``gold``; ``other`` is another number."""
    g = int(gold) if gold.lstrip("-").isdigit() else gold
    comma = f"{g:,}" if isinstance(g, int) else gold
    body = worked.rsplit("####", 1)[0]
    minus = "\u2212"
    return [
        f"{body}#### {gold}", f"#### {gold}", f"#### {gold}.0", f"#### 0{gold}", f"#### ${gold}",
        f"#### {comma}", f"#### ${comma}.00", f"#### {gold}.", f"####{gold}", f"#### {gold} dollars",
        f"#### -{gold}", f"#### {minus}{gold}", f"#### {gold}\nQuestion: Tom has {other} apples.",
        f"So the answer is {gold}.\nQuestion: next one #### {other}", f"The answer is {gold}", f"The answer is {gold}.",
        f"The total is ${comma}.", f"The total is ${comma}.00", f"\\boxed{{{gold}}}", f"\\boxed{{{gold}}} and {other} left",
        f"\\boxed{{1 + {gold}}}", f"\\boxed{{2 \\times {gold}}}", f"\\boxed{{\\frac{{1}}{{{gold}}}}}",
        f"\\boxed{{{minus}{gold}}}", f"#### {other}\n#### {gold}", f"#### {gold}\n#### {other}",
        f"{gold} </s> {other}", f"{gold}<|im_end|>#### {other}", f"</s>#### {gold}", f"#### {gold}</s>",
        f"{body}#### {other}", f"{body}", f"{body}The answer is {gold}", f"We get {gold}-{other}",
        f"#### {gold},{other}", f"#### {gold}.{other}", f"#### .{gold}", f"#### {gold}..", f"#### {gold},",
        f"#### {gold} ", f"####  {gold}", f"#### \n{gold}", f"#### {gold}\n", f"{gold}.\n", f"${gold}$",
        f"{gold} {minus}{other}", f"{gold} \u2013 {other}", f"Answer: {gold}%", f"{gold}e3", f"{gold}/{other}",
        f"QUESTION: {gold}", f"Question:{gold}", f"question: {other} #### {gold}", "", "no number here",
        f"#### [invalid] {gold}", f"#### {gold[::-1]}", f"{gold}" * 3, f"-{gold}", f"--{gold}", f"$-{gold}",
        f"{rng.randint(0, 10**6)} then {gold}", f"#### {rng.randint(0, 10**4)}",
    ]


def _cases() -> list[tuple[str, str]]:
    """(output, gold worked answer) pairs: 2 variants of each of 400 test problems, 8
    random mutations of a problem's own worked answer for 100 more, and the zoo outputs."""
    task = load_task("gsm8k", path=gsm8k_data_dir())
    problems = task.problems("test")
    rng = random.Random(20261207)
    cases: list[tuple[str, str]] = []
    for p in rng.sample(problems, 400):
        other = rng.choice(problems).reference
        variants = _variants(rng, p.reference, p.meta["answer"], other)
        cases += [(text, p.meta["answer"]) for text in rng.sample(variants, 2)]
    alphabet = list("0123456789 .,$-#:\n") + ["####", "\\boxed{", "}", "Question:", "</s>", "<|im_end|>", "\u2212"]
    for p in rng.sample(problems, 100):
        for _ in range(8):
            text = list(p.meta["answer"])
            for _ in range(rng.randint(1, 4)):
                text.insert(rng.randrange(len(text) + 1), rng.choice(alphabet))
            cases.append(("".join(text), p.meta["answer"]))
    by_id = {p.id: p for p in problems}
    for line in ZOO_OUTPUTS.read_text().splitlines():
        rec = json.loads(line)
        cases.append((rec["text"], by_id[rec["id"]].meta["answer"]))
    return cases


def test_strict_and_flexible_equal_lm_eval_on_many_outputs(reference):
    cases = _cases()
    assert len(cases) >= 1000
    task = load_task("gsm8k", path=gsm8k_data_dir())
    ours = [task.score(Problem(id="x", prompt="q", reference=gold.rsplit("####", 1)[-1].strip(),
                                             meta={"answer": gold}), text) for text, gold in cases]
    theirs = [lm_eval_decide(reference, text, gold) for text, gold in cases]
    bad = [(c, o, t) for c, o, t in zip(cases, ours, theirs) if {k: o[k] for k in t} != t]
    assert not bad, f"{len(bad)} of {len(cases)} disagree, e.g. {bad[:3]}"
    # the set exercises both outcomes of both metrics and the cases where they differ
    for key in ("strict", "flexible"):
        hits = sum(t[key] for t in theirs)
        assert 100 < hits < len(cases) - 100, (key, hits)
    assert sum(t["strict"] != t["flexible"] for t in theirs) > 100
    assert sum(o["numeric"] != t["flexible"] for o, t in zip(ours, theirs)) > 50


def test_stop_sequences_are_lm_evals(reference):
    config, _, _ = reference
    assert tuple(config["generation_kwargs"]["until"]) == STOP_SEQUENCES


def test_the_ignore_step_equals_lm_evals_regexes(reference):
    """exact_match's ``regexes_to_ignore`` (from lm-eval's YAML, applied as regexes) give
    the same string as our linear-time ignore step, on text with zero, one or several
    ``#### `` markers, newlines, dollars, commas and final dots."""
    import re

    from tasks.gsm8k_lm_eval import IGNORE_PATTERNS, _ignore

    _, _, options = reference
    assert tuple(options["regexes_to_ignore"]) == IGNORE_PATTERNS

    def theirs(text: str) -> str:
        for pattern in options["regexes_to_ignore"]:
            text = re.sub(pattern, "", text)
        return text.lower()

    rng = random.Random(7)
    pieces = ["#### ", "####", "# ", "#", "\n", "$", ",", ".", "1", "2", "A", " ", "x", ".\n"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))) for _ in range(5000)]
    assert sum("#### " in t for t in texts) > 1000 and sum(t.count("#### ") > 1 for t in texts) > 300
    assert [theirs(t) for t in texts] == [_ignore(t) for t in texts]
