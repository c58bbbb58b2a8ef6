"""Shared timing for the benchmark scripts: median wall time after a warm-up."""
from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int, warmup: bool = True) -> tuple[float, object]:
    """Median ``time.perf_counter`` seconds of ``repeats`` calls of ``fn`` (after one untimed
    warm-up call unless ``warmup=False``), and the last call's result."""
    out = fn() if warmup else None
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out
