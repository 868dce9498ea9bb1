"""bench.sink_bench's report: rows/s per write, and the ratios paired round by round."""

from __future__ import annotations

from bench.sink_bench import TARGET_RATIO, TUNED_RATIO, paired_ratios, render


def test_render_names_the_target_ratio_and_the_tuned_one():
    seconds = {"pipeline": [2.0, 4.0], "sink": [1.5, 3.0], "ceiling": [1.8, 3.0], "ceiling_tuned": [1.0, 2.0]}
    result = {
        "records": 20000, "repeats": 2, "warmup_rounds": 3, "spark_master": "local[3]",
        "rows_per_second": {name: 20000 / sorted(times)[0] for name, times in seconds.items()},
        "ratios": paired_ratios(seconds),
    }
    text = render(result)
    assert result["ratios"][TARGET_RATIO] == {"median": 0.825, "min": 0.75, "max": 0.9}
    assert "pipeline / connector (target >= 0.8)" in text and "0.82" in text
    assert result["ratios"][TUNED_RATIO] == {"median": 0.5, "min": 0.5, "max": 0.5}
    assert "pipeline / connector with the job's write options" in text and "0.50" in text
