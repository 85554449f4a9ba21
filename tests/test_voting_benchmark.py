"""``benchmarks.voting``'s equal-wall-time arithmetic: what a budget buys each model."""
from __future__ import annotations

from benchmarks.voting import at_budget

RUN = {"seconds_per_sample": 0.01, "accuracy": {"maj@1": 0.5, "maj@2": 0.6, "maj@4": 0.7, "confidence@1": 0.5,
                                                "confidence@2": 0.65, "confidence@4": 0.66, "temporal@1": 0.55,
                                                "temporal@2": 0.62, "temporal@4": 0.75}}


def test_a_budget_buys_floor_b_over_s_samples_read_at_the_largest_measured_k():
    assert at_budget(RUN, 4, 0.005) == {"k": 0, "capped": False, "maj": 0.0, "confidence": 0.0, "temporal": 0.0}
    assert at_budget(RUN, 4, 0.01) == {"k": 1, "capped": False, "maj": 0.5, "confidence": 0.5, "temporal": 0.55}
    assert at_budget(RUN, 4, 0.03)["k"] == 2  # 3 samples affordable; the curves hold k = 1, 2, 4
    point = at_budget(RUN, 4, 0.5)  # 50 affordable, capped at N = 4
    assert point["k"] == 4 and point["capped"] and point["temporal"] == 0.75
