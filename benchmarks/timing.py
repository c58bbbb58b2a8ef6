"""Shared timing for the benchmark scripts: median wall time after a warm-up."""
from __future__ import annotations

import statistics
import time

import torch


def median_seconds(fn, repeats: int, warmup: bool = True, device: torch.device | str = "cpu") -> tuple[float, object]:
    """Median ``time.perf_counter`` seconds of ``repeats`` calls of ``fn`` (after one untimed
    warm-up call unless ``warmup=False``), and the last call's result. On CUDA the device is
    synchronised before each clock read, so queued kernels are counted."""
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    out = fn() if warmup else None
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out
