"""The producer bench's figures: median rates, and the ratio paired round by round."""

from __future__ import annotations

import pytest

from bench.producer_bench import rates_and_ratio


def test_the_ratio_pairs_each_round_of_the_pipeline_with_the_raw_loop_of_the_same_round():
    # Round 2 is slow for both loops (the machine, not the code): paired, every round says 0.5 or so.
    result = rates_and_ratio(10_000, pipeline_s=[1.0, 2.0, 1.2], raw_s=[0.5, 1.0, 0.5])
    assert result["ratio_pipeline_to_raw"] == pytest.approx(0.5), "a ratio of the medians would say 0.42"
    assert result["ratio_rounds"] == {"min": pytest.approx(0.417, abs=1e-3), "max": pytest.approx(0.5)}
    assert result["pipeline_users_per_s"] == 8_333 and result["raw_users_per_s"] == 20_000


def test_unpaired_rounds_are_refused():
    with pytest.raises(ValueError, match="as many"):
        rates_and_ratio(10_000, pipeline_s=[1.0, 2.0], raw_s=[0.5])
