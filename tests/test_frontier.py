"""benchmarks.frontier: the budget -> samples -> verified@k math, FLOP counts, verdicts, and a smoke run."""
from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from ar_fixtures import tiny_ar
from test_hf_fixtures import single_thread  # noqa: F401 - pytest fixture
from test_hf_native import llada_checkpoint  # noqa: F401 - pytest fixture

from benchmarks import cascade_check, gpu_bench, stop_check
from benchmarks import cascade_pricing as pricing
from benchmarks.frontier import analysis, budget, cli, compare, markdown, measure, models, store
from sdtt_search.cli import task_from_config
from sdtt_search.loading import load_model
from tasks import load_task


# ---------------------------------------------------------------------------- budget -> k -> verified@k
def test_budget_buys_floor_of_budget_over_seconds_per_sample():
    assert budget.affordable(0.3, 0.1) == 3  # 0.3 / 0.1 = 2.999...96 in floats: still 3 samples
    assert budget.affordable(0.29, 0.1) == 2
    assert budget.affordable(0.09, 0.1) == 0
    assert budget.affordable(6.4, 0.05) == 128


def _brute_verified_at_k(verified, correct, k):
    """Average over every size-k subset of: pick uniformly among its verified samples (0 if none)."""
    scores = []
    for subset in itertools.combinations(range(len(verified)), k):
        picked = [i for i in subset if verified[i]]
        scores.append(sum(correct[i] for i in picked) / len(picked) if picked else 0.0)
    return sum(scores) / len(scores)


def test_accuracy_at_budget_is_the_exact_verified_at_k_and_marks_capped_points():
    # 4 samples; problem A: samples 0 and 1 verified, only 0 correct; problem B: nothing verified.
    problems = [{"verified": [True, True, False, False], "correct": [True, False, False, False]},
                {"verified": [False] * 4, "correct": [False] * 4}]
    assert budget.accuracy_at_budget(problems, 0.5, 0.4) == (0.0, 0, False)  # cannot afford one sample
    acc, k, capped = budget.accuracy_at_budget(problems, 0.5, 1.0)  # k = 2
    # A: P(a subset of 2 holds a verified sample) = 1 - C(2,2)/C(4,2) = 5/6, then 1/2 of the verified are correct.
    assert (k, capped) == (2, False) and acc == pytest.approx((5 / 6 * 0.5 + 0) / 2)
    acc, k, capped = budget.accuracy_at_budget(problems, 0.5, 2.0)  # k = 4 = N: not capped
    assert (k, capped) == (4, False) and acc == pytest.approx(0.25)
    acc, k, capped = budget.accuracy_at_budget(problems, 0.5, 10.0)  # k = 20 > N: capped at N
    assert (k, capped) == (4, True) and acc == pytest.approx(0.25)


def test_accuracy_at_budget_matches_enumeration_over_subsets():
    problems = [{"verified": [True, False, True, True, False, True], "correct": [True, False, False, True, True, False]},
                {"verified": [False, False, True, False, False, False], "correct": [False, True, True, False, False, False]},
                {"verified": [True] * 6, "correct": [False] * 6}]
    for k in range(1, 7):
        acc, got_k, _ = budget.accuracy_at_budget(problems, 0.1, 0.1 * k)
        want = sum(_brute_verified_at_k(p["verified"], p["correct"], k) for p in problems) / len(problems)
        assert got_k == k and acc == pytest.approx(want, abs=1e-12)


def test_budget_grid_spans_one_fast_sample_to_n_slow_ones():
    runs = {"a": {"seconds_per_sample": 0.01}, "b": {"seconds_per_sample": 0.04}}
    grid = budget.budget_grid(runs, 8, points=5)
    assert grid[0] == pytest.approx(0.01) and grid[-1] == pytest.approx(0.32)
    assert all(x < y for x, y in itertools.pairwise(grid))


def test_latency_regime_times_powers_of_two_and_the_points_between_up_to_n():
    assert measure.latency_ks(64) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
    assert measure.latency_ks(10) == [1, 2, 3, 4, 6, 8, 10]
    assert measure.latency_ks(4) == [1, 2, 3, 4] and measure.latency_ks(1) == [1]


def test_a_latency_budget_buys_the_most_samples_whose_measured_latency_fits():
    latency = {1: 0.010, 2: 0.015, 4: 0.020, 8: 0.050}
    assert budget.affordable_by_latency(latency, 0.005) == 0
    assert budget.affordable_by_latency(latency, 0.010) == 1  # exactly at the budget: affordable
    assert budget.affordable_by_latency(latency, 0.030) == 4
    assert budget.affordable_by_latency(latency, 1.0) == 8
    # timing noise: 4 samples measured quicker than 2; a budget that fits 4 buys 4
    assert budget.affordable_by_latency({1: 0.010, 2: 0.030, 4: 0.025}, 0.026) == 4
    grid = budget.latency_grid({"a": {1: 0.01, 2: 0.02, 4: 0.04}, "b": {1: 0.03, 2: 0.05, 4: 0.16}}, points=5)
    assert grid[0] == pytest.approx(0.01) and grid[-1] == pytest.approx(0.16)
    assert all(x < y for x, y in itertools.pairwise(grid))


def test_latency_points_score_verified_at_the_affordable_k_and_the_student_can_win_there():
    # the student: 1 of 4 samples right per problem, 10 ms for 1 sample, 20 ms for 4;
    # the AR model: 3 of 4 right, but 30 ms for even one sample.
    student, ar = _problems([1] * 10), _problems([3] * 10)
    runs = {"s": {"per_problem": student}, "ar": {"per_problem": ar}}
    latencies = {"s": {"1": 0.010, "2": 0.015, "4": 0.020}, "ar": {"1": 0.030, "2": 0.031, "4": 0.032}}  # json keys
    points = budget.latency_points(runs, latencies, [0.012, 0.025, 0.0305, 0.05])
    assert [p["k"]["s"] for p in points] == [1, 4, 4, 4] and [p["k"]["ar"] for p in points] == [0, 0, 1, 4]
    assert points[0]["accuracy"]["s"] == pytest.approx(0.25) and points[1]["accuracy"]["s"] == pytest.approx(1.0)
    assert points[2]["accuracy"]["ar"] == pytest.approx(0.75) and points[0]["accuracy"]["ar"] == 0.0
    report = {"models": {"s": {"role": "student", "search": runs["s"]}, "ar": {"role": "ar", "search": runs["ar"]}},
              "frontier": [], "verdicts": [], "speedups": [], "problems": 10}
    report["latency_verdicts"] = compare.verdicts(report, points)
    assert [v["winner"] for v in report["latency_verdicts"]] == ["student", "student", "student", "tie"]
    assert markdown.verdict_text(report["latency_verdicts"][0]).endswith("(the AR twin affords no sample)")
    (line,) = compare.targets(report)
    assert line.startswith("- equal latency, one problem at a time") and "solves more at 3 of 4 budgets" in line
    assert "The student solves more at 0.012s, 0.025s, 0.0305s; ties at 0.05s" in line
    assert "3 of 4 budgets (2 below one AR sample): met (AR solves more at none)" in line  # a tie is no AR win
    # wins only where AR affords nothing, ties elsewhere: not met
    report["latency_verdicts"][2]["winner"] = "tie"
    (line,) = compare.targets(report)
    assert "2 of 4 budgets (2 below one AR sample): NOT met" in line


def test_the_speed_bar_is_checked_in_search_and_one_problem_at_a_time():
    # teacher 12 steps; student 4: bar (12 / 4) x 0.8 = 2.4x. Slower in search (FLOP-bound),
    # 3x quicker than the teacher for one sample of one problem, 1.5x for eight.
    search = {"pass@1": 0.6, "seconds_per_sample": 0.001}
    report = {"models": {"t": {"role": "teacher", "steps": 12, "throughput": [{"batch": 1, "samples_per_s": 10.0}],
                               "search": search},
                         "s": {"role": "student", "steps": 4, "throughput": [{"batch": 1, "samples_per_s": 25.0}],
                               "search": {"pass@1": 0.6, "seconds_per_sample": 0.002}}},
              "latency": {"t": {1: 0.030, 8: 0.045}, "s": {1: 0.010, 8: 0.030}}, "verdicts": []}
    (row,) = report["speedups"] = compare.speedups(report)
    assert row["search"] == pytest.approx(0.5) and row["latency"] == pytest.approx({1: 3.0, 8: 1.5})
    assert row["met_in"] == ["k=1"] and not row["met"]
    (line,) = compare.targets(report)
    assert "0.50x faster in search, 3.00x one problem at a time with k = 1, 1.50x" in line
    assert line.endswith("met at k=1 only")
    report["models"]["s"]["search"]["pass@1"] = 0.5  # under 95 % of the teacher: met nowhere
    (row,) = report["speedups"] = compare.speedups(report)
    assert row["met_in"] == [] and compare.targets(report)[0].endswith("NOT met")


def _brute_rounds(verified: list[bool], r: int, k: int) -> float:
    """Mean over every order of the samples of the rounds of r drawn before one verifies (at most k / r)."""
    rounds = []
    for order in itertools.permutations(range(len(verified))):
        j = 1
        while j < k // r and not any(verified[i] for i in order[: j * r]):
            j += 1
        rounds.append(j)
    return sum(rounds) / len(rounds)


def test_verify_and_stop_rounds_match_enumeration_over_sample_orders():
    assert budget.none_verified(2, 4, 2) == pytest.approx(1 / 6) and budget.none_verified(3, 4, 2) == 0.0
    assert budget.none_verified(0, 4, 3) == 1.0 and budget.none_verified(1, 4, 0) == 1.0
    patterns = [[True, False, False, False, False, False], [True, True, False, False, False, False],
                [False] * 6, [True] * 6, [False, True, False, True, True, False]]
    for r, k in [(1, 6), (2, 6), (3, 6), (1, 3), (2, 4), (6, 6)]:
        for pattern in patterns:
            got = budget.stop_rounds([{"verified": pattern, "correct": pattern}], r, k)
            assert got == pytest.approx(_brute_rounds(pattern, r, k), abs=1e-12), (pattern, r, k)
        both = [{"verified": p, "correct": p} for p in patterns[:2]]  # the mean over problems
        assert budget.stop_rounds(both, r, k) == pytest.approx(
            (_brute_rounds(patterns[0], r, k) + _brute_rounds(patterns[1], r, k)) / 2)


def test_a_mean_latency_budget_buys_the_most_accurate_stopping_rule_that_fits():
    # 4 samples per problem; problem 1 has 1 verified (= correct), problem 2 none:
    # verified@k = k / 4 / 2. Rounds of 1: expected rounds to k are 1, 1.75, 2.5, 3.25 (problem 1:
    # 1 + 3/4 + 1/2 + 1/4 capped; problem 2 always all k), rounds of 2: 1 then 1.75 for k = 4.
    per_problem = [{"verified": [True, False, False, False], "correct": [True, False, False, False]},
                   {"verified": [False] * 4, "correct": [False] * 4}]
    assert budget.stop_rounds(per_problem, 1, 4) == pytest.approx(((1 + 3 / 4 + 1 / 2 + 1 / 4) + 4) / 2)
    runs = {"m": {"per_problem": per_problem}}
    latency = {"m": {"1": 0.010, "2": 0.012, "4": 0.030}}
    budget_for_all_four = 0.012 * budget.stop_rounds(per_problem, 2, 4)  # rounds of 2: 0.012 x 1.75 = 0.021
    (low, mid, high) = budget.stop_points(runs, latency, [0.005, 0.012, budget_for_all_four])
    assert low["k"]["m"] == 0 and low["accuracy"]["m"] == 0.0
    # 12 ms: rounds of 1 to k = 1 costs 10 ms (0.125); rounds of 2 to k = 2 costs 12 ms (0.25)
    assert (mid["round"]["m"], mid["k"]["m"]) == (2, 2) and mid["accuracy"]["m"] == pytest.approx(0.25)
    # all four samples: rounds of 2 (21 ms) beat rounds of 1 (32.5 ms) and one round of 4 (30 ms)
    assert (high["round"]["m"], high["k"]["m"]) == (2, 4) and high["accuracy"]["m"] == pytest.approx(0.5)
    assert high["mean_s"]["m"] == pytest.approx(0.021)


def _report(student_acc, ar_acc, student_k, ar_k):
    roles = {"t": {"role": "teacher"}, "s": {"role": "student"}, "ar": {"role": "ar"}}
    frontier_pts = [{"budget_s": 0.1 * (i + 1), "accuracy": {"t": 0.0, "s": s, "ar": a}, "k": {"t": 1, "s": sk, "ar": ak},
                     "capped": {"t": False, "s": False, "ar": False}}
                    for i, (s, a, sk, ak) in enumerate(zip(student_acc, ar_acc, student_k, ar_k))]
    return {"models": roles, "frontier": frontier_pts, "speedups": [], "problems": 10}


def test_verdicts_say_plainly_where_the_ar_baseline_wins():
    # 10 problems: accuracies closer than half a problem (0.05) are a tie
    report = _report([0.0, 0.5, 0.7, 0.9, 0.6, 0.97], [0.0, 0.6, 0.7, 0.8, 0.0, 1.0], [0, 1, 2, 4, 1, 8], [0, 2, 4, 8, 0, 16])
    report["verdicts"] = compare.verdicts(report)
    assert [v["winner"] for v in report["verdicts"]] == ["none", "ar", "tie", "student", "student", "tie"]
    assert report["verdicts"][1]["margin_problems"] == pytest.approx(-1.0)
    assert markdown.verdict_text(report["verdicts"][1]).startswith("**AR wins**")
    assert markdown.verdict_text(report["verdicts"][4]).endswith("(the AR twin affords no sample)")
    (line,) = compare.targets(report)
    assert "student solves more at 2 of 5 budgets (1 below one AR sample): NOT met" in line
    assert "AR baseline solves more at 1 budgets: 0.2s" in line and "ties at 0.3s, 0.6s" in line
    # 0.99996 must not print as 1.000 beside a real 1.000
    assert markdown._acc(0.99996) == "1.0000" and markdown._acc(1.0) == "1.000"


def _problems(rates):
    """Per-problem (verified, correct) lists of 4 samples; rate r: r of them right and verified."""
    return [{"verified": [i < r for i in range(4)], "correct": [i < r for i in range(4)]} for r in rates]


def test_paired_standard_error_matches_the_formula_and_cancels_shared_difficulty():
    a, b = [1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]
    d = [0.0, 0.0, 1.0, 0.0]  # mean 0.25, sample variance 0.25
    assert compare.paired_se(a, b) == pytest.approx((0.25 / len(d)) ** 0.5)
    # the same constant gap on problems of very different difficulty: no paired error at all
    assert compare.paired_se([0.9, 0.1, 0.5], [0.8, 0.0, 0.4]) == pytest.approx(0.0, abs=1e-12)
    assert budget.per_problem_at_k(_problems([4, 0, 2]), 1) == pytest.approx([1.0, 0.0, 0.5])
    assert budget.per_problem_at_k(_problems([4, 0, 2]), 0) == [0.0, 0.0, 0.0]
    assert budget.per_problem_at_k(_problems([2]), 9) == [1.0]  # k > N: all N samples
    with pytest.raises(ValueError, match="same problems"):
        compare.paired_se([1.0], [1.0, 0.0])


def test_a_margin_inside_the_paired_error_is_a_tie_and_a_consistent_one_a_win():
    # 10 problems, k = 1 for both. Noisy: the student is right on 4 problems the AR twin
    # misses and wrong on 2 it solves: +2 problems, but +-4.9 at 95 % (paired se 0.249): a tie.
    report = _report([0.6], [0.5], [1], [1])
    student, ar = [4] * 3 + [0] * 2 + [4] * 1 + [0] * 4, [0] * 3 + [4] * 2 + [0] * 5
    report["models"]["s"]["search"] = {"per_problem": _problems(student)}
    report["models"]["ar"]["search"] = {"per_problem": _problems(ar)}
    report["frontier"][0]["accuracy"].update(s=0.4, ar=0.2)
    (v,) = compare.verdicts(report)
    assert v["winner"] == "tie" and v["margin_problems"] == pytest.approx(2.0)
    assert v["margin_ci95_problems"] == pytest.approx(1.96 * compare.paired_se([1, 1, 1, 0, 0, 1, 0, 0, 0, 0],
                                                                                [0, 0, 0, 1, 1, 0, 0, 0, 0, 0]) * 10)
    assert "tie (" in markdown.verdict_text(v) and "+2.0 ± 4.9 of 10 problems" in markdown.verdict_text(v)
    # consistent: right on 5 problems the AR twin misses, never the other way round: +5 +- 3.3
    student, ar = [4] * 5 + [4] * 3 + [0] * 2, [0] * 5 + [4] * 3 + [0] * 2
    report["models"]["s"]["search"] = {"per_problem": _problems(student)}
    report["models"]["ar"]["search"] = {"per_problem": _problems(ar)}
    report["frontier"][0]["accuracy"].update(s=0.8, ar=0.3)
    (v,) = compare.verdicts(report)
    assert v["winner"] == "student" and markdown.verdict_text(v).startswith("student wins by 5.0 ± 3.3 of 10 problems")


def test_break_even_is_the_sample_ratio_at_which_the_student_matches_ar():
    ar = [0.5, 0.75, 0.875, 0.9375]  # verified@1..4
    student = [0.3, 0.5, 0.6, 0.75]
    # AR@1 (0.5) needs student@2 -> 2x; AR@2 (0.75) needs student@4 -> 2x; AR@4 out of reach
    assert compare.break_even(student, ar, [1, 2, 4, 8]) == {1: 2.0, 2: 2.0, 4: None}
    assert compare.break_even(ar, student, [1, 2, 4]) == {1: 1.0, 2: 0.5, 4: 0.5}  # ahead even when slower
    # on per-problem runs: one sample right of 4 on one problem, none on the other
    runs = _problems([1, 0])
    assert budget.curve(runs, 4) == pytest.approx([0.125, 0.25, 0.375, 0.5])
    report = _report([0.5], [0.5], [1], [1])
    report["models"]["s"]["search"] = {"per_problem": _problems([1, 0])}
    report["models"]["ar"]["search"] = {"per_problem": _problems([2, 0])}  # verified@k: 0.25, 5/12, 0.5, 0.5
    (row,) = compare.break_even_table(report)
    assert row["ks"] == [1, 2, 4] and row["ratio"] == {1: 2.0, 2: 2.0, 4: 1.0}
    report.update(verdicts=[], targets=[], break_even=[row], task="t", when="w", machine="m", command="c",
                  samples=4, search_batch=4, repeats=1, batches=[])
    for d in report["models"].values():
        d.update(kind="diffusion", steps=1, parameters=1, backend="b", forward_share=None, flops_per_token=0,
                 flops_source="counted", throughput=[], search={**d.get("search", {}), "pass@1": 0.0, "pass@1_se": 0.0,
                                                                "verified@N": 0.0, "seconds_per_sample": 1.0})
    for p in report["frontier"]:
        p["k"] = {n: 1 for n in report["models"]}
        p["accuracy"] = {n: 0.0 for n in report["models"]}
        p["capped"] = {n: False for n in report["models"]}
    assert "| s | ar | 2x | 2x | 1x |" in markdown.markdown(report)


def test_the_student_meets_the_best_ar_engine_at_each_budget():
    report = _report([0.6, 0.6], [0.5, 0.9], [1, 2], [1, 2])
    report["models"]["ar:ar_backend=transformers"] = {"role": "ar"}
    report["frontier"][0]["accuracy"]["ar:ar_backend=transformers"] = 0.8  # faster engine: leads at budget 1
    report["frontier"][1]["accuracy"]["ar:ar_backend=transformers"] = 0.7
    for point in report["frontier"]:
        point["k"]["ar:ar_backend=transformers"] = 1
    report["verdicts"] = v1, v2 = compare.verdicts(report)
    assert (v1["ar"], v1["winner"]) == ("ar:ar_backend=transformers", "ar")
    assert (v2["ar"], v2["winner"]) == ("ar", "ar")
    (line,) = compare.targets(report)
    assert "vs ar:ar_backend=transformers / ar + verifier" in line


def test_diffusion_models_decoding_different_lengths_get_a_warning():
    """A denoiser fills all its columns: a teacher decoding 21 where students decode 12
    makes every speed ratio against it look better than it is."""
    report = _report([0.5], [0.5], [1], [1])
    report["models"] = {"twin:as_denoiser=true": {"kind": "diffusion", "role": "teacher", "gen_length": 21},
                        "s": {"kind": "diffusion", "role": "student", "gen_length": 12},
                        "ar": {"kind": "ar", "role": "ar", "gen_length": 25}}
    report["verdicts"] = []
    warning, = compare.targets(report)
    assert "twin:as_denoiser=true: 21" in warning and "s: 12" in warning and "gen_length=12" in warning
    assert "ar: 25" not in warning  # an AR decoder stops at EOS: its length is not compared
    report["models"]["twin:as_denoiser=true"]["gen_length"] = 12
    assert compare.unequal_lengths(report) is None
    # the effective length is the spec's, when it overrides the sampler
    assert models.describe_model(models.load_spec("sudoku4-teacher:gen_length=12", "cpu", "auto"))["gen_length"] == 12


# ---------------------------------------------------------------------------- FLOPs, forward share
def test_attention_flops_are_counted_on_cpu():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    flops, _ = measure.count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    assert flops == 4 * 2 * 3 * 5 * 7 * 8  # QK^T and AV, 2 FLOPs per multiply-add


def test_ar_flops_per_token_are_twice_the_matmul_parameters_per_processed_token(tmp_path):
    net, _ = tiny_ar(tmp_path / "ar", gen_length=12)
    model = load_model(tmp_path / "ar", ar_backend="transformers")
    task = load_task("countdown", n=3)
    problems = task.problems("test", limit=4)
    width = max(len(model.tokenizer.encode(p)) for p in models.prompts_for(task, problems, 4))
    before = model.nfe
    flops = measure.flops_per_token(model, task, problems, 4)
    steps = model.nfe - before  # decode steps of the batch (the prefill makes the first token)
    out = model.generate(models.prompts_for(task, problems, 4), model.default_sampler(), seeds=range(4))
    generated = models.generated_tokens(out)
    matmul = sum(p.numel() for n, p in net.named_parameters() if n.endswith("proj.weight"))  # no embeddings
    processed = 4 * (width + steps - 1)  # prefill of the (left-padded) prompts + one token per later step
    expected = 2 * matmul * processed / generated
    # The lm_head (on one position per step) and attention add a few percent on top.
    assert 0.98 * expected <= flops <= 1.2 * expected


def test_diffusion_flops_per_token_scale_with_steps_over_the_whole_sequence():
    task = load_task("sudoku", size=4)
    problems = task.problems("test", limit=4)
    counts = {}
    for steps in (2, 8):
        model = models.load_spec(f"sudoku4-teacher:steps={steps},cache=false", "cpu", "auto")
        counts[steps] = measure.flops_per_token(model, task, problems, 4)
    assert counts[8] / counts[2] == pytest.approx(4.0, rel=0.02)  # one full forward per step
    prompt = len(model.tokenizer.encode(task.format_prompt(problems[0])))
    length = prompt + model.gen_length  # every step runs the whole sequence, prompt included
    linear = sum(p.numel() for n, p in model.model.named_parameters()
                 if n.startswith("blocks.") and p.dim() == 2 and "adaLN" not in n)
    per_step = 2 * linear * length / model.gen_length  # generated tokens per row = gen_length (through EOS)
    assert 0.98 * per_step <= counts[2] / 2 <= 1.15 * per_step


def test_forward_timer_counts_calls_and_restores_forward():
    layer = torch.nn.Linear(3, 3)
    with measure.forward_timer(layer) as box:
        layer(torch.ones(1, 3))
        layer(torch.ones(1, 3))
    assert box["calls"] == 2 and box["seconds"] > 0
    assert "forward" not in layer.__dict__


def test_forward_timer_counts_the_prefix_cached_forward_of_causal_denoisers():
    from sdtt_search.diffusion import SamplerConfig, generate
    from sdtt_search.model import ModelConfig, build_denoiser
    from sdtt_search.tokenizer import Tokenizer

    tokenizer = Tokenizer.char_level("0123456789+-*/=,")
    model = build_denoiser(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, n_layers=1, n_heads=1,
                                       backbone="llama", causal=True, mask_id=tokenizer.mask_id)).eval()
    with measure.forward_timer(model) as box:
        generate(model, tokenizer, ["1+2", "3*4"], SamplerConfig(method="confidence", steps=3, block_length=2),
                 gen_length=6)
    assert box["calls"] == 3 and box["seconds"] > 0
    assert "forward_span" not in model.__dict__ and "forward" not in model.__dict__


def test_forward_timer_counts_the_approximate_caches_forward():
    from sdtt_search.diffusion import SamplerConfig, generate
    from sdtt_search.model import ModelConfig, build_denoiser
    from sdtt_search.tokenizer import Tokenizer

    tokenizer = Tokenizer.char_level("0123456789+-*/=,")
    model = build_denoiser(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, n_layers=1, n_heads=1,
                                       cond_dim=16, mask_id=tokenizer.mask_id)).eval()
    with measure.forward_timer(model) as box:  # blocks of 2, 2 steps each: 3 whole-sequence and 3 block calls
        generate(model, tokenizer, ["1+2", "3*4"], SamplerConfig(method="confidence", steps=6, block_length=2,
                                                                 kv_cache="dual"), gen_length=6)
    assert box["calls"] == 6 and box["seconds"] > 0
    assert "forward_replace" not in model.__dict__


def test_model_spec_overrides_the_default_sampler():
    model = models.load_spec("sudoku4-teacher:method=confidence,steps=5,temperature=0.5", "cpu", "auto")
    sampler = model.default_sampler()
    assert (sampler.method, sampler.steps, sampler.temperature) == ("confidence", 5, 0.5)
    assert models.load_spec("sudoku4-teacher", "cpu", "auto").default_sampler().method == "ancestral"
    assert models.load_spec("sudoku4-ar:ar_backend=transformers", "cpu", "vllm").backend_name == "transformers"
    twin = models.load_spec("sudoku4-ar:as_denoiser=true", "cpu", "auto")
    assert twin.kind == "diffusion" and twin.model.supports_prefix_cache
    assert twin.default_sampler().block_length == 1
    # the FLOP count of a vLLM model loads its transformers twin, whatever its spec says
    forced = models.load_spec("sudoku4-ar:ar_backend=vllm", "cpu", "transformers", force_backend=True)
    assert forced.backend_name == "transformers"


# ---------------------------------------------------------------------------- smoke runs
def test_frontier_smoke_run_writes_json_png_and_checks_targets(tmp_path, monkeypatch):
    tiny_ar(tmp_path / "ar", task={"name": "sudoku", "options": {"size": 4}}, gen_length=17)
    out = tmp_path / "out"
    ar = str(tmp_path / "ar")
    args = cli.parse(["--task", "sudoku", "--models", "sudoku4-teacher", "sudoku4-sdtt-2", ar,
                           "--problems", "3", "--samples", "4", "--batches", "1", "2", "--repeats", "1",
                           "--share-batch", "2", "--flops-batch", "2", "--search-batch", "8", "--latency-problems", "1",
                           "--ar-backend", "transformers", "--out", str(out)])
    report = cli.run(args)
    saved = json.loads((out / "frontier.json").read_text())
    assert (out / "frontier.png").stat().st_size > 0
    assert list(saved["models"]) == ["sudoku4-teacher", "sudoku4-sdtt-2", ar]
    assert [m["role"] for m in saved["models"].values()] == ["teacher", "student", "ar"]
    for d in saved["models"].values():
        assert [t["batch"] for t in d["throughput"]] == [1, 2] and all(t["tokens_per_s"] > 0 for t in d["throughput"])
        assert 0 < d["forward_share"] <= 1 and d["flops_per_token"] > 0
        assert len(d["search"]["verified_counts"]) == 3 and 0 <= d["search"]["pass@1"] <= 1
        assert len(d["search"]["seconds_per_sample_repeats"]) == 1 and d["search"]["seconds_per_sample"] > 0
        assert len(d["search"]["seconds_per_round_sample_repeats"]) == 1 and d["search"]["seconds_per_round_sample"] > 0
        assert budget.round_seconds(d["search"]) == d["search"]["seconds_per_round_sample"]
    # The 2-step student does fewer FLOPs per token than the 16-step teacher.
    assert saved["models"]["sudoku4-sdtt-2"]["flops_per_token"] < saved["models"]["sudoku4-teacher"]["flops_per_token"] / 4
    assert any("sudoku4-sdtt-2 vs sudoku4-teacher" in line for line in report["targets"])
    assert any("equal wall-clock budget" in line for line in report["targets"])
    assert len(saved["verdicts"]) == len(saved["frontier"])
    for point in saved["frontier"]:
        for name, k in point["k"].items():
            bought = budget.affordable(point["budget_s"], saved["models"][name]["search"]["seconds_per_sample"])
            assert k == min(bought, 4) and point["capped"][name] == (bought > 4)
    # The frontier is recomputable from the counts kept in the json.
    first = saved["frontier"][-1]
    d = saved["models"]["sudoku4-teacher"]["search"]
    if first["k"]["sudoku4-teacher"]:
        per_problem = [{"verified": [True] * v + [False] * (4 - v), "correct": [True] * c + [False] * (4 - c)}
                       for v, c in zip(d["verified_counts"], d["verified_correct_counts"])]
        acc, _, _ = budget.accuracy_at_budget(per_problem, d["seconds_per_sample"], first["budget_s"])
        assert acc == pytest.approx(first["accuracy"]["sudoku4-teacher"])
    # the latency regime: every model timed at k = 1..4 samples of one problem, budgets scored at those k
    assert saved["latency_ks"] == [1, 2, 3, 4] and len(saved["latency_verdicts"]) == len(saved["latency_frontier"])
    for name, latency in saved["latency"].items():
        assert sorted(int(k) for k in latency) == [1, 2, 3, 4] and all(t > 0 for t in latency.values())
        for point in saved["latency_frontier"]:
            fits = [int(k) for k, t in latency.items() if t <= point["budget_s"] * (1 + 1e-9)]
            assert point["k"][name] == max(fits, default=0)
    assert any(line.startswith("- equal latency, one problem at a time") for line in report["targets"])
    assert any(line.startswith("- equal mean latency, verify-and-stop") for line in report["targets"])
    assert len(saved["stop_verdicts"]) == len(saved["stop_frontier"]) == len(saved["latency_frontier"])
    # verify-and-stop in the search run: rounds of one sample, each at the search's s/sample
    assert any(line.startswith("- equal mean cost, verify-and-stop in the search run") for line in report["targets"])
    for point in saved["batch_stop_frontier"]:
        for name, k in point["k"].items():
            if k:
                sps = saved["models"][name]["search"]["seconds_per_round_sample"]  # a round: distinct problems
                per_problem = store.unslim(saved)["models"][name]["search"]["per_problem"]
                assert point["round"][name] == 1 and point["mean_s"][name] <= point["budget_s"] * (1 + 1e-9)
                assert point["mean_s"][name] == pytest.approx(sps * budget.stop_rounds(per_problem, 1, k))
    # the cascade (student, then the AR twin where nothing verified): never below the student alone
    for key, alone_key in (("batch_cascade_frontier", "batch_stop_frontier"), ("cascade_frontier", "stop_frontier")):
        assert len(saved[key]) == len(saved[alone_key]) and "per_problem" not in saved[key][0]
        for point, alone in zip(saved[key], saved[alone_key]):
            assert point["accuracy"]["sudoku4-sdtt-2"] >= alone["accuracy"]["sudoku4-sdtt-2"] - 1e-12
            assert point["mean_s"]["sudoku4-sdtt-2"] <= point["budget_s"] * (1 + 1e-9)
    text = markdown.markdown(report)
    assert "Speed-up over sudoku4-teacher" in text and "student vs AR" in text and report["machine"] in text
    assert "Cascade, one problem at a time" in text and "| cascade vs AR alone |" in text
    assert "sudoku4-sdtt-2 -> AR" in text and f"{ar} alone" in text
    assert "Latency regime, one problem at a time" in text and "| latency budget (s) |" in text
    assert "| search | 1 problem, k=1 | target |" in text  # k = 8 is not timed with N = 4
    # --render: the saved counts give back every table of the run, nothing measured again
    rendered = analysis.analyse(store.unslim(saved), len(saved["frontier"]))
    assert markdown.markdown(rendered) == text
    for point, again in zip(report["latency_frontier"], rendered["latency_frontier"]):
        assert again["k"] == point["k"] and again["accuracy"] == pytest.approx(point["accuracy"])
    written = (out / "frontier.md").read_text()  # the run's own report, never a shared document
    assert written.startswith(text) and "frontier.png" in written
    # --accuracy-from: the saved accuracy runs are reused (no search run), only the timings are new
    monkeypatch.setattr(measure, "search_run", lambda *a, **k: pytest.fail("searched again"))
    again_args = ["--task", "sudoku", "--models", "sudoku4-sdtt-2", ar, "--problems", "3", "--samples", "4",
                  "--batches", "1", "--repeats", "1", "--share-batch", "2", "--flops-batch", "2", "--search-batch", "8",
                  "--latency-problems", "0", "--ar-backend", "transformers", "--out", str(tmp_path / "again"),
                  "--accuracy-from", str(out / "frontier.json")]
    again = cli.run(cli.parse(again_args))
    for name in ("sudoku4-sdtt-2", ar):
        mine, theirs = again["models"][name]["search"], report["models"][name]["search"]
        assert mine["pass@1"] == theirs["pass@1"]
        assert budget.verified_counts(mine["per_problem"]) == budget.verified_counts(theirs["per_problem"])
    with pytest.raises(SystemExit, match="same --problems"):
        cli.run(cli.parse([*again_args[:6], "2", *again_args[7:]]))  # 2 problems, not 3
    # a saved run of other weights under the same name (a retrained zoo model) is refused
    tampered = json.loads((out / "frontier.json").read_text())
    assert tampered["models"]["sudoku4-sdtt-2"]["search"]["fingerprint"]
    tampered["models"]["sudoku4-sdtt-2"]["search"]["fingerprint"] = "0" * 16
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    with pytest.raises(SystemExit, match="other weights"):
        cli.run(cli.parse([*again_args[:-1], str(tmp_path / "tampered.json")]))


def test_a_windowed_spec_reuses_its_unwindowed_twins_accuracy_run():
    saved = {"s": {"pass@1": 0.5}, "s:steps=5": {"pass@1": 0.6}, "s:steps=5,head_tokens=3": {"pass@1": 0.7}}
    assert store.reused_search(saved, "s:window=4") == saved["s"]
    assert store.reused_search(saved, "s:window=4") is not saved["s"]  # its timings are its own
    assert store.reused_search(saved, "s:steps=5,window=4") == saved["s:steps=5"]
    assert store.reused_search(saved, "s:window=4,steps=5,head_tokens=3") == saved["s:steps=5,head_tokens=3"]
    assert store.reused_search(saved, "s:steps=6,window=4") is None  # other steps: other tokens
    assert store.reused_search(saved, "t") is None


def test_models_of_different_tasks_are_refused(tmp_path):
    tiny_ar(tmp_path / "ar", task={"name": "countdown", "options": {"n": 3}}, gen_length=12)
    args = cli.parse(["--task", "sudoku", "--models", "sudoku4-sdtt-2", str(tmp_path / "ar"), "--problems", "2",
                           "--samples", "2", "--batches", "1", "--repeats", "1", "--share-batch", "1",
                           "--flops-batch", "1", "--out", str(tmp_path / "out"), "--ar-backend", "transformers"])
    with pytest.raises(SystemExit, match="one task"):
        cli.run(args)


def test_gpu_bench_quick_mode_runs_on_cpu(tmp_path):
    report = gpu_bench.main(["--device", "cpu", "--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "gpu.json").read_text())
    assert saved["device_name"] == "cpu" and saved["complete"]
    rows = report["crossover"]["results"]
    assert [r["batch"] for r in rows["ar"]] == [1, 4] and all(r["tokens_per_s"] > 0 for r in rows["student"])
    assert {r["backend"] for r in report["attention"]} == {"sdpa"}
    assert {r["model"] for r in report["zoo"]} == {"sudoku4-teacher", "sudoku4-sdtt-4", "sudoku4-ar",
                                                  "countdown-cd3-num-sdtt-8", "countdown-cd3-num-sdtt-4",
                                                  "countdown-cd3-num-teacher", "countdown-cd3-ar"}
    text = (tmp_path / "gpu.md").read_text()
    assert "AR overtakes the student" in text and "transformers" in text and "local executor" in text


def test_the_speed_bar_divides_by_the_sdtt_rounds_steps_when_fewer():
    """A threshold student decoding within a larger step budget than its SDTT round is
    held to its round's bar (8 steps, not its budget of 10); a tail student to its budget."""
    block_wise = {"sdtt": {"teacher_steps": 16, "round": 1}}
    assert models.bar_steps(block_wise, 10) == 8 and models.bar_steps(block_wise, 4) == 4
    assert models.bar_steps({"sdtt": {"teacher_steps": 12, "round": 1, "layout": "tail"}}, 4) == 4
    assert models.bar_steps({}, 12) == 12
    assert models.describe_model(models.load_spec("countdown-cd3-num-sdtt-8", "cpu", "auto"))["bar_steps"] == 8


def test_a_step_budget_that_never_binds_is_held_to_the_calls_made():
    """``steps=12`` on a threshold student that finishes in 5 calls is a 5-step student for
    the bar (12 / 5 x 0.8 against a 12-step teacher, not 0.8); more calls than steps
    (windowed) keep the budget; no count (vLLM) keeps it too."""
    assert compare.student_steps({"steps": 12, "bar_steps": 12, "calls_per_generate": 5}) == 5
    assert compare.student_steps({"steps": 4, "bar_steps": 4, "calls_per_generate": 7}) == 4
    assert compare.student_steps({"steps": 10, "bar_steps": 8, "calls_per_generate": None}) == 8
    teacher = {"role": "teacher", "steps": 12, "throughput": [{"batch": 1, "samples_per_s": 1.0}],
               "search": {"pass@1": 0.5, "seconds_per_sample": 1.0}}
    student = {"role": "student", "steps": 12, "bar_steps": 12, "calls_per_generate": 5,
               "throughput": [{"batch": 1, "samples_per_s": 2.0}], "search": {"pass@1": 0.5, "seconds_per_sample": 0.6}}
    (row,) = compare.speedups({"models": {"t": teacher, "s": student}})
    assert row["target_speedup"] == pytest.approx(12 / 5 * 0.8) and not row["met"]
    assert "12 (5 calls)" in markdown._steps(student) and markdown._steps(teacher) == "12"


def test_the_steps_counted_for_a_windowed_sampler_are_its_unwindowed_calls():
    """A windowed step runs several calls: the bar counts steps, as the same sampler without
    the window takes them (same tokens), so a budget that never binds is not let off."""
    spec = "countdown-cd3-num-sdtt-4:steps=12"
    plain, windowed = (models.load_spec(s, "cpu", "auto") for s in (spec, spec + ",window=1"))
    task = task_from_config(plain.meta["task"])
    problems = task.problems("test", limit=8)
    _, steps = measure.forward_share(plain, task, problems, 8)
    _, windowed_steps = measure.forward_share(windowed, task, problems, 8)
    with measure.forward_timer(models.network_of(windowed)) as box:
        windowed.generate(models.prompts_for(task, problems, 8), windowed.default_sampler(), seeds=range(8, 16))
    assert 4 <= steps < 12 and windowed_steps == steps < box["calls"]


# ---------------------------------------------------------------------------- cascades
def _brute_cascade(first, then, r1, k1, r2, k2, seconds1, seconds2):
    """(mean cost, accuracy) of the cascade over every order of both problems' samples:
    stage 1 in rounds of r1 (at most k1) until a verified one, then stage 2 likewise; the
    pick is uniform among the verified ones of the stage that found them."""
    def stage(pattern, r, k, seconds):
        runs = []
        for order in itertools.permutations(range(len(pattern))):
            cost, pick = 0.0, None
            for lo in range(0, k, r):
                cost += seconds
                drawn = [pattern[i] for i in order[: lo + r]]
                verified = [c for v, c in drawn if v]
                if verified:
                    pick = sum(verified) / len(verified)
                    break
            runs.append((cost, pick))
        return runs

    cost = acc = 0.0
    one, two = stage(first, r1, k1, seconds1), stage(then, r2, k2, seconds2)
    for c1, p1 in one:
        for c2, p2 in two:
            cost += c1 + (c2 if p1 is None else 0.0)
            acc += p1 if p1 is not None else (p2 or 0.0)
    return cost / len(one) / len(two), acc / len(one) / len(two)


def test_cascade_pricing_matches_enumeration_over_both_models_sample_orders():
    # per problem (verified, correct) of 4 samples; stage 1 fails on problem 3, stage 2 has a wrong verified one
    first = [[(1, 1), (0, 0), (0, 0), (0, 0)], [(1, 1), (1, 0), (0, 0), (1, 1)], [(0, 0)] * 4]
    then = [[(0, 0), (1, 1), (1, 1), (0, 0)], [(0, 0)] * 4, [(1, 0), (1, 1), (0, 0), (0, 0)]]

    def options(patterns, latency, zero=False):
        return pricing.stop_options([sum(v for v, _ in p) for p in patterns], [sum(v and c for v, c in p) for p in patterns],
                                    4, latency, zero=zero)

    one, two = options(first, {1: 0.010, 2: 0.013}), options(then, {1: 0.030, 4: 0.050}, zero=True)
    assert one.settings == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 2), (2, 4)]
    assert two.settings == [(0, 0), (1, 1), (1, 2), (1, 3), (1, 4), (4, 4)]
    mean_cost, mean_acc = pricing.cascade_table(one, two)
    for i, (r1, k1) in enumerate(one.settings):
        for j, (r2, k2) in enumerate(two.settings):
            want = [_brute_cascade(f, t, r1, k1, r2 or 1, k2, {1: 0.010, 2: 0.013}[r1], {0: 0, 1: 0.030, 4: 0.050}[r2])
                    for f, t in zip(first, then)]
            assert mean_cost[i, j] == pytest.approx(sum(c for c, _ in want) / 3, abs=1e-12), (r1, k1, r2, k2)
            assert mean_acc[i, j] == pytest.approx(sum(a for _, a in want) / 3, abs=1e-12), (r1, k1, r2, k2)


def test_the_best_cascade_within_a_budget_is_the_most_accurate_then_the_cheapest():
    # one problem, 2 samples: stage 1 verifies 1 of 2, stage 2 both
    one = pricing.stop_options([1], [1], 2, {1: 1.0})
    two = pricing.stop_options([2], [2], 2, {1: 10.0}, zero=True)
    low, mid, high = pricing.cascade_best(one, two, [0.5, 1.5, 100.0])
    assert low is None  # not even one stage-1 sample fits
    # 1.5: stage 1 alone, rounds of 1 up to 2: cost 1 + 1/2 = 1.5, accuracy 1 (one of two verifies within 2)
    assert mid["first"] == (1, 2) and mid["then"] == (0, 0) and mid["accuracy"] == pytest.approx(1.0)
    assert mid["mean_s"] == pytest.approx(1.5) and mid["per_problem"] == pytest.approx([1.0])
    # more budget buys nothing more accurate: the cheapest setting that reaches 1.0 again, not a dearer one
    assert (high["first"], high["then"]) == ((1, 2), (0, 0)) and high["mean_s"] == pytest.approx(1.5)
    # stage 1 capped at one sample: half the problems pass on to stage 2 (10 s), which always verifies
    cost, acc = pricing.cascade_table(one, two)
    assert cost[0, 1] == pytest.approx(1 + 0.5 * 10) and acc[0, 1] == pytest.approx(1.0)


def test_cascade_verdicts_compare_with_the_ar_engine_alone_at_the_same_mean_budget():
    # two kinds of problem, 10 of each (so that a quarter of the problems is outside the paired error)
    per_problem = {
        "s": [{"verified": [True, False], "correct": [True, False]}, {"verified": [False, False], "correct": [False, False]}],
        "ar": [{"verified": [True, True], "correct": [True, True]}, {"verified": [True, False], "correct": [True, False]}],
    }
    runs = {n: {"per_problem": pp * 10} for n, pp in per_problem.items()}
    latency = {"s": {1: 0.001}, "ar": {1: 0.010}}
    budgets = [0.0005, 0.0015, 0.012, 0.05]
    report = {"models": {"s": {"role": "student", "search": runs["s"]}, "ar": {"role": "ar", "search": runs["ar"]}},
              "problems": 20}
    report["cascade_frontier"] = budget.cascade_points(runs, latency, budgets, ["s"], ["ar"])
    report["stop_frontier"] = budget.stop_points(runs, latency, budgets)
    verdicts = compare.cascade_verdicts(report, "cascade_frontier", "stop_frontier")
    assert [v["winner"] for v in verdicts] == ["none", "student", "student", "tie"]
    # 1.5 ms: the student alone (a second sample would make it (1.5 + 2) / 2 = 1.75 ms): 0.25; the twin affords none
    assert verdicts[1]["student_accuracy"] == pytest.approx(0.25) and verdicts[1]["ar_k"] == 0
    assert report["cascade_frontier"][1]["setting"]["s"] == [1, 1, None, 0, 0]
    assert "cascade wins" in markdown.verdict_text(verdicts[1]) and "s -> AR" in markdown.verdict_text(verdicts[1])
    # 12 ms: the student up to 2 samples (1.75 ms), then the twin up to 2 where it failed: only the second kind,
    # (10 + 10 / 2) ms for half the problems; everything solved, against the twin alone's one sample (0.75)
    point = report["cascade_frontier"][2]
    assert point["setting"]["s"] == [1, 2, "ar", 1, 2] and point["accuracy"]["s"] == pytest.approx(1.0)
    assert point["mean_s"]["s"] == pytest.approx(0.00175 + 0.5 * 0.015)
    assert report["stop_frontier"][2]["accuracy"]["ar"] == pytest.approx(0.75)
    assert verdicts[2]["margin_problems"] == pytest.approx(5.0)
    line = compare.budget_line(verdicts, "Cascade", "best cascade + verifier", "the cascade", ("never behind", "behind"))
    assert "the cascade solves more at 2 of 3 budgets (1 below one AR sample): never behind." in line


def test_cascade_check_measures_both_searches_one_problem_at_a_time():
    out = cascade_check.main(["--student", "sudoku4-sdtt-2", "--ar", "sudoku4-ar:ar_backend=transformers",
                                       "--first", "1", "1", "--then", "2", "4", "--alone", "2", "4", "--problems", "6",
                                       "--warmup", "1"])
    cascade, alone = out["cascade"], out["alone"]
    assert cascade["mean_ms"] > 0 and alone["mean_ms"] > 0 and alone["reached_ar_stage"] == 0
    # the student's one sample per problem, plus rounds of 2 of the twin for the problems it left
    assert 1 <= cascade["samples_drawn"] <= 1 + 4 * cascade["reached_ar_stage"] + 1e-9
    assert cascade["verified_accuracy"] >= 1 - cascade["reached_ar_stage"] - 1e-9


def test_family_cascades_hand_over_within_a_family_and_never_to_the_same_model():
    # kind A (10 problems): s1 always verifies, s2 never; kind B (10): s1 never, s2 one sample of two;
    # the AR engine verifies one sample of two on A and nothing on B; every sample costs 1 ms
    kinds = {"s1": ([True, True], [False, False]), "s2": ([False, False], [True, False]),
             "ar": ([True, False], [False, False])}
    runs = {n: {"per_problem": [{"verified": a, "correct": a}] * 10 + [{"verified": b, "correct": b}] * 10}
            for n, (a, b) in kinds.items()}
    latency = {n: {1: 0.001} for n in runs}
    budgets = [0.00125, 0.0015, 0.00175]
    students = budget.family_points(budget.cascade_points(runs, latency, budgets, ["s1", "s2"], ["s1", "s2"]))
    ars = budget.family_points(budget.cascade_points(runs, latency, budgets, ["ar"], ["ar"]))
    # 1.5 ms: s1's one sample, then s2's one sample on the half it left: 0.5 + 0.5 x 0.5
    assert students[1]["model"] == "s1" and students[1]["setting"] == [1, 1, "s2", 1, 1]
    assert students[1]["accuracy"] == pytest.approx(0.75) and students[1]["mean_s"] == pytest.approx(0.0015)
    # 1.75 ms: s2 up to two samples there ((1 + 0.5) ms on half the problems): everything
    assert students[2]["setting"] == [1, 1, "s2", 1, 2] and students[2]["accuracy"] == pytest.approx(1.0)
    # the AR engine has no other member: verify-and-stop alone (two samples cost (1.5 + 2) / 2 = 1.75 ms)
    assert [a["setting"] for a in ars] == [[1, 1, None, 0, 0], [1, 1, None, 0, 0], [1, 2, None, 0, 0]]
    assert all(p["setting"][2] != p["model"] for p in students)  # a model is never its own second stage
    verdicts = compare.family_verdicts(students, ars, 20)
    # the AR engine: 0.25 from one sample, 0.5 from two
    assert [v["winner"] for v in verdicts] == ["student"] * 3
    assert [v["margin_problems"] for v in verdicts] == pytest.approx([5.0, 10.0, 10.0])
    assert verdicts[2]["student"] == "s1 -> s2" and verdicts[0]["student"] == "s1"


def test_cascade_check_many_problems_at_a_time_with_a_student_second():
    out = cascade_check.main([
        "--student", "countdown-cd3-num-sdtt-4", "--second", "countdown-cd3-num-sdtt-4:head_tokens=3,head_temperature=1.3",
        "--ar", "countdown-cd3-ar:ar_backend=transformers", "--first", "1", "1", "--then", "1", "4", "--alone", "1", "4",
        "--problems", "12", "--many", "--repeats", "1"])
    cascade, alone = out["cascade"], out["alone"]
    assert cascade["mean_ms"] > 0 and alone["mean_ms"] > 0 and alone["reached_ar_stage"] == 0
    # one student sample per problem, then up to 4 of the hot-head student where it did not verify
    assert 0 < cascade["reached_ar_stage"] < 1  # the 4-call student solves most CD3 problems in one sample, not all
    assert 1 <= cascade["samples_drawn"] <= 1 + 4 * cascade["reached_ar_stage"] + 1e-9
    assert cascade["verified_accuracy"] >= 1 - cascade["reached_ar_stage"] - 1e-9


def test_stop_check_runs_searches_and_cascades_as_executed():
    out = stop_check.main(["--problems", "4", "--repeats", "1", "countdown-cd3-num-sdtt-4@2",
                      "countdown-cd3-num-sdtt-4@1>countdown-cd3-num-sdtt-4:head_tokens=3,head_temperature=1.3@4/2"])
    alone, cascade = out["countdown-cd3-num-sdtt-4@2"], out[list(out)[1]]
    assert 1 <= alone["samples_drawn"] <= 2 and alone["reached_ar_stage"] == 0
    assert 1 <= cascade["samples_drawn"] <= 1 + 4 * cascade["reached_ar_stage"] + 1e-9
    assert cascade["verified_accuracy"] >= 1 - cascade["reached_ar_stage"] - 1e-9
    filled = stop_check.main(["--problems", "4", "--repeats", "1", "--fill", "countdown-cd3-num-sdtt-4@2"])
    # 4 problems fill no batch of 64: the open ones get the rest of their samples in one round
    assert filled["countdown-cd3-num-sdtt-4@2"]["verified_accuracy"] == alone["verified_accuracy"]
    assert filled["countdown-cd3-num-sdtt-4@2"]["samples_drawn"] == 2
    assert stop_check.parse_stage("countdown-cd3-ar:ar_backend=transformers@8/4") == ("countdown-cd3-ar:ar_backend=transformers", 8, 4)
    for bad in ("countdown-cd3-ar", "countdown-cd3-ar@0", "countdown-cd3-ar@4/x"):
        with pytest.raises(SystemExit, match="MODEL@K"):
            stop_check.parse_stage(bad)


def test_stratified_candidates_are_scored_in_drawing_order():
    # verified only at index 2: a search drawing the first k finds it from k = 3; a random
    # pair of the 4 holds it with probability 1/2
    rows = [{"verified": [False, False, True, False], "correct": [False, False, True, False]}]
    ordered = [{**rows[0], "ordered": True}]
    assert budget.per_problem_at_k(rows, 2) == [pytest.approx(0.5)]
    assert [budget.per_problem_at_k(ordered, k)[0] for k in (1, 2, 3, 4, 9)] == [0.0, 0.0, 1.0, 1.0, 1.0]
    # rounds of 1 stop after the 3rd; rounds of 2 after the 2nd round; capped at k
    assert [budget.stop_rounds(ordered, r, k) for r, k in [(1, 4), (2, 4), (1, 2), (4, 4)]] == [3, 2, 2, 1]
    # the cascade pricing's per-problem options in drawing order
    options = pricing.ordered_stop_options([rows[0]["verified"]], [rows[0]["correct"]], {1: 0.5, 2: 0.8})
    table = dict(zip(options.settings, zip(options.cost[:, 0], options.none[:, 0], options.accuracy[:, 0])))
    assert table[(1, 2)] == (1.0, 1.0, 0.0) and table[(1, 4)] == (1.5, 0.0, 1.0)
    assert table[(2, 2)] == (0.8, 1.0, 0.0) and table[(2, 4)] == (1.6, 0.0, 1.0)
    # slim keeps the order, unslim restores it
    report = {"samples": 4, "models": {"m": {"search": {"per_problem": ordered}}}}
    back = store.unslim(store.slim(report))["models"]["m"]["search"]["per_problem"]
    assert back == ordered


def test_saved_runs_without_a_rounds_timing_price_rounds_at_the_search_slice():
    assert budget.round_seconds({"seconds_per_sample": 0.002}) == 0.002
    assert budget.round_seconds({"seconds_per_sample": 0.002, "seconds_per_round_sample": 0.003}) == 0.003


def test_accuracy_runs_can_come_from_several_saved_frontiers(tmp_path):
    import argparse

    def saved(path, pass1):
        search = {"pass@1": pass1, "verified_counts": [1], "verified_correct_counts": [1], "correct_counts": [1]}
        by_name = {"a": {"search": dict(search)}, f"only{pass1}": {"search": dict(search)}}
        path.write_text(json.dumps({"problems": 1, "samples": 2, "split": "test", "models": by_name}))
        return path

    args = argparse.Namespace(problems=1, samples=2, split="test")
    got = store.saved_accuracy([saved(tmp_path / "1.json", 0.1), saved(tmp_path / "2.json", 0.2)], args)
    assert set(got) == {"a", "only0.1", "only0.2"} and got["a"]["pass@1"] == 0.2  # the last file's
    assert store.saved_accuracy(None, args) == {}
    with pytest.raises(SystemExit, match="no such file"):
        store.saved_accuracy([tmp_path / "missing.json"], args)


def test_hub_diffusion_and_hub_ar_models_share_a_frontier(tmp_path, llada_checkpoint):  # noqa: F811
    # hf: models record no task: --task with --task-options gives it, and both families run side by side,
    # with forward passes per sample and tokens per forward pass beside tokens/s
    from test_hf_causal import _write_causal_lm

    causal = _write_causal_lm(tmp_path / "tiny-qwen2", "qwen2")
    out = tmp_path / "out"
    diffusion = f"hf:{llada_checkpoint}:steps=4,gen_length=8,block_length=4,temperature=1.0"
    ar = f"hf:{causal}:gen_length=8"
    args = cli.parse(["--task", "countdown", "--task-options", "n=3", "--models", diffusion, ar, "--problems", "2",
                      "--samples", "2", "--batches", "1", "2", "--repeats", "1", "--share-batch", "2",
                      "--flops-batch", "2", "--search-batch", "4", "--latency-problems", "0", "--ar-backend",
                      "transformers", "--out", str(out)])
    cli.run(args)
    saved = json.loads((out / "frontier.json").read_text())
    assert [m["kind"] for m in saved["models"].values()] == ["diffusion", "ar"]
    for d in saved["models"].values():
        assert all(t["forward_passes"] > 0 and t["tokens_per_pass"] > 0 for t in d["throughput"])
    assert "tokens per forward pass" in (out / "frontier.md").read_text()
    with pytest.raises(SystemExit, match="records no task: pass --task"):
        cli.load_models([f"hf:{causal}"], "cpu", "transformers")
