"""Part 5: segment counts on the bench database.

(a) a property + age segment: Customer Type = Platinum AND age 25-30;
(b) an event-count-in-window segment: did Charged ≥ 2 times in the last 30 days;
(c) the two combined with a sum of Amount (the builder's typical "valuable young buyers").
Each is counted several times (the first run warms the cache and is not kept);
the median and p95 of the kept runs are printed.
"""

from __future__ import annotations

import statistics
import time

from tests.bench import BenchContext, Figure

PART = "segments"
PROPERTY_AND_AGE = {"all": [
    {"property": "Customer Type", "op": "equals", "value": "Platinum"},
    {"system": "age", "op": "between", "value": [25, 30]},
]}  # fmt: skip
EVENT_COUNT = {"event": "Charged", "op": "did", "count": {"op": ">=", "value": 2},
               "within_days": 30}  # fmt: skip
COMBINED = {"all": [
    {"system": "age", "op": "between", "value": [25, 30]},
    {"event": "Charged", "op": "did", "within_days": 30,
     "aggregate": {"fn": "sum", "property": "Amount", "op": ">=", "value": 500}},
    {"not": {"system": "test_profile", "op": "is_true"}},
]}  # fmt: skip


def _time_counts(definition: dict, runs: int) -> tuple[list[float], int]:
    from segments.selectors import segment_count

    count = segment_count(definition)  # warm-up, not kept
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        count = segment_count(definition)
        timings.append(time.perf_counter() - started)
    return timings, count


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def run(ctx: BenchContext) -> list[Figure]:
    runs = 3 if ctx.quick else 7
    figures: list[Figure] = []
    cases = [
        ("(a) property + age", PROPERTY_AND_AGE, "≤ 1 s"),
        ("(b) did Charged ≥ 2 times in 30 days", EVENT_COUNT, "≤ 3 s"),
        ("(c) age + sum(Amount) in 30 days, no testers", COMBINED, ""),
    ]
    for label, definition, target in cases:
        timings, count = _time_counts(definition, runs)
        figures.append(Figure(PART, f"{label}: members", count, "people"))
        figures.append(Figure(PART, f"{label}: count median", statistics.median(timings) * 1000,
                              "ms", target))  # fmt: skip
        figures.append(Figure(PART, f"{label}: count p95 ({runs} runs)", _p95(timings) * 1000,
                              "ms", target))  # fmt: skip
    return figures
