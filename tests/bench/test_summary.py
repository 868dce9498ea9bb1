"""`python -m bench`'s summary: every figure against its baseline."""

from __future__ import annotations

from bench.__main__ import render_summary, summary_rows


def test_summary_gives_each_bench_its_ratio():
    results = {
        "producer": {"pipeline_users_per_s": 2000, "raw_users_per_s": 16000, "ratio_pipeline_to_raw": 0.125},
        "sink": {"rows_per_second": {"pipeline": 985.0, "ceiling": 3457.0, "ceiling_tuned": 4000.0},
                 "ratios": {"pipeline / connector": {"median": 0.285, "min": 0.2, "max": 0.3},
                            "pipeline / connector with the job's write options": {"median": 0.246, "min": 0.2, "max": 0.3}}},
        "size": {"bytes_per_user": {"avro-lz4": 230.0, "avro-zstd": 180.0, "seed json": 1000.0},
                 "ratio_to_seed_json": {"avro-lz4": 0.23, "avro-zstd": 0.18, "seed json": 1.0}},
        "load": {"highest_sustained_users_per_s": 500,
                 "warmup": {"offered_users_per_s": 1000, "freshness_seconds": {"p95": 12.0}},
                 "steps": [{"offered_users_per_s": 1000, "freshness_seconds": {"p95": 6.0}}]},
    }
    ratios = {name: ratio for name, _, _, ratio in summary_rows(results)}
    assert ratios == {
        "producer / raw fastavro loop": "0.12",
        "sink decode+write / connector": "0.28",
        "sink decode+write / connector, job's write options": "0.25",
        "bytes per user, best codec / seed JSON": "0.18",
        "bytes per user, lz4 (today) / seed JSON": "0.23",
        "sustained users/s / 3,000": "0.17",
        "p95 freshness at 1,000 users/s / 3 s": "2.00",
        "p95 freshness in the warm-up (1,000 users/s, cold JVMs)": "-",
    }
    assert "12.00 s" in render_summary(results), "the warm-up is shown, not judged"
    assert "avro-zstd" in render_summary(results)


def test_summary_when_nothing_was_sustained_or_landed():
    results = {"load": {"highest_sustained_users_per_s": None,
                        "steps": [{"offered_users_per_s": 1000, "freshness_seconds": {"p95": None}}]}}
    assert [row[3] for row in summary_rows(results)] == ["0.00", "-"]
