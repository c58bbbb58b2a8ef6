"""Per-epoch records of runs as arrays: what the figures draw and the per-seed statistics read.

A run's ``history`` is its list of per-epoch records (:func:`cckl_core.record.evaluate`); :func:`series`
reads one key of it, :func:`seed_series` its mean and spread over the training seeds of one run, :func:`table`
several keys of several runs as one table.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd


def series(run_or_history: Any, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(epochs, values)`` of ``key`` from a run's history (or the history list); missing or ``None`` -> nan."""
    history = getattr(run_or_history, "history", run_or_history)
    epochs = np.array([rec.get("epoch", k) for k, rec in enumerate(history)], dtype=float)
    values = np.array([np.nan if rec.get(key) is None else rec[key] for rec in history], dtype=float)
    return epochs, values


def is_seed_group(item) -> bool:
    """Whether ``item`` is a list of runs (the training seeds of one run) rather than one run."""
    return isinstance(item, (list, tuple)) and bool(item) and hasattr(item[0], "history")


def seed_series(item: Any, key: str, log: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(epochs, mean, std, n_seeds)`` of ``history[key]`` over a run or a list of runs of several seeds.

    With ``log=True`` the natural log is taken per seed before averaging. ``std`` (ddof 1) is
    NaN for a single seed. Runs of one group must share their epochs.
    """
    group = list(item) if is_seed_group(item) else [item]
    per_run = [series(run, key) for run in group]
    epochs = per_run[0][0]
    if any(len(e) != len(epochs) or not np.array_equal(e, epochs) for e, _ in per_run):
        raise ValueError(f"runs of one seed group have different epochs: {[len(e) for e, _ in per_run]}")
    values = np.vstack([ln(v) if log else v for _, v in per_run])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        std = np.nanstd(values, axis=0, ddof=1) if len(group) > 1 else np.full(len(epochs), np.nan)
        return epochs, np.nanmean(values, axis=0), std, len(group)


def ln(values: np.ndarray) -> np.ndarray:
    """The natural log of the positive values, NaN elsewhere (no warning)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), np.nan)


def table(runs: list, keys: tuple[str, ...]) -> pd.DataFrame:
    """The per-epoch record of ``runs`` (e.g. the training seeds of one run): one row per (run, training seed,
    epoch), with its model, data set and the values ``keys`` (NaN where a record lacks one)."""
    rows = [pd.DataFrame({"run": run.name, "model": run.display_name, "dataset": run.dataset_name, "seed": run.seed,
                          "epoch": series(run, keys[0])[0].astype(int), **{k: series(run, k)[1] for k in keys}})
            for run in runs]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["run", "seed", "epoch", *keys])
