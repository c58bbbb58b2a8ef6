"""Statistics behind the claims tables: intervals and tests that let a claim fail.

Every notebook ends with a claims table (the paper's claim, our value, whether it
holds). "Holds" needs an uncertainty statement, and a claim needs three possible
outcomes: it holds, it does not hold, or the data cannot tell (:func:`verdict`).

- :func:`wilson_interval`: Wilson score interval of a binomial proportion (an accuracy).
- :func:`mcnemar`: two classifiers on the same test images: exact McNemar test and an
  interval for the paired difference in accuracy.
- :func:`bootstrap_diff`: percentile bootstrap interval of ``statistic(x_b) - statistic(x_a)``
  for two independent (or paired) samples; :func:`bootstrap_ci` for one statistic of one
  or several (paired) samples, e.g. a ratio of means ``mean(G2) / mean(KL)`` over pairs.
- :func:`rank_trend`: Spearman rank correlation with two- and one-sided p-values.
- :func:`seed_interval`: t interval of the mean of a few per-seed effects (training noise);
  :func:`seed_test`: the same with the one-sample t test's p-values.
- :func:`cluster_bootstrap`: a bootstrap of statistics over pairs of images that resamples the
  images (pairs share images, so resampling pairs understates the uncertainty);
  :func:`cluster_bootstraps` several statistics over the same resamples (the draws made once).
- :func:`holm`: Holm's step-down adjustment of p-values within a family of claims.
- :func:`verdict`: "yes" / "no" / "inconclusive" from an interval; :func:`test_verdict` from two
  one-sided tests; :func:`directional_verdict` from an adjusted two-sided p-value and the sign of
  the effect. :data:`VERDICTS` is the one vocabulary every claims table uses.

Only numpy and scipy; the bootstrap uses :func:`scipy.stats.bootstrap` (percentile method)
in bounded-memory batches. Arguments are checked by :mod:`cckl_core.checks` (a string where
a number belongs raises a ``TypeError`` that is also a ``ValueError``).
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as _st

from . import checks

__all__ = [
    "HOLDS", "DOES_NOT_HOLD", "INCONCLUSIVE", "NOT_INFORMATIVE", "NOT_ASSESSED", "VERDICTS",
    "NOT_TESTED", "z_value", "wilson_interval", "mcnemar", "bootstrap_ci", "bootstrap_diff", "rank_trend",
    "pearson", "seed_interval", "seed_test", "cluster_bootstrap", "cluster_bootstraps", "weighted_mean", "weighted_median", "holm", "verdict",
    "test_verdict", "directional_verdict",
]

#: The verdicts of a claim, from here to every claims table: the claim holds, does not hold, the data
#: cannot tell at this size, the profile cannot test it (a stand-in model, or models trained below the
#: claim's floor), the criterion could not have failed here, nothing to judge.
HOLDS = "yes"
DOES_NOT_HOLD = "no"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not tested at this scale"
NOT_INFORMATIVE = "not informative"
NOT_ASSESSED = "n/a"
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NOT_TESTED, NOT_INFORMATIVE, NOT_ASSESSED)


def _check_confidence(confidence: float) -> float:
    """``confidence`` as a float, checked to be a number in (0, 1)."""
    confidence = checks.real(confidence, "confidence")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return confidence


def z_value(confidence: float = 0.95) -> float:
    """Two-sided normal quantile ``z = Phi^{-1}(1 - (1 - confidence) / 2)`` (1.959964 at 95%)."""
    return float(_st.norm.ppf(0.5 + _check_confidence(confidence) / 2.0))


# --------------------------------------------------------------------------- proportions
def wilson_interval(successes: float | np.ndarray, n: float | np.ndarray,
                    confidence: float = 0.95) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Wilson score interval ``(lo, hi)`` for a binomial proportion ``p = successes / n``.

    With ``p = s / n`` and ``z = z_value(confidence)``::

        centre = (p + z^2 / (2n)) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))
        (lo, hi) = (centre - half, centre + half)

    Bounds are fractions in [0, 1]; ``0/n`` gives ``lo = 0`` and ``n/n`` gives ``hi = 1``
    exactly. Unlike the Wald interval it never collapses to a point at 0 or n.
    Vectorised: ``successes`` and ``n`` broadcast; scalars in give floats out, arrays in
    give arrays out. ``n = 0`` (no observations) raises ``ValueError``: an empty test set
    is a bug upstream, not a proportion of unknown value. ``successes`` must lie in [0, n]
    (integers are not required, so a weighted count is accepted).
    Example: 81 / 263 at 95% gives (0.2553, 0.3662).
    """
    z = z_value(confidence)
    s = checks.float_array(successes, "successes")
    n_arr = checks.float_array(n, "n")
    if np.any(~np.isfinite(s)) or np.any(~np.isfinite(n_arr)):
        raise ValueError("successes and n must be finite")
    if np.any(n_arr <= 0):
        raise ValueError("wilson_interval needs n >= 1 (got n <= 0): no observations, no interval")
    if np.any(s < 0) or np.any(s > n_arr):
        raise ValueError("successes must lie in [0, n]")
    p = s / n_arr
    z2 = z * z
    denom = 1.0 + z2 / n_arr
    centre = (p + z2 / (2.0 * n_arr)) / denom
    half = z / denom * np.sqrt(p * (1.0 - p) / n_arr + z2 / (4.0 * n_arr * n_arr))
    lo = np.where(s == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    hi = np.where(s == n_arr, 1.0, np.clip(centre + half, 0.0, 1.0))
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


# --------------------------------------------------------------------------- paired classifiers
def _as_bool(x: Any, name: str) -> np.ndarray:
    """``x`` as a 1-d bool array (0/1 accepted), checked."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array of per-image correctness, got shape {a.shape}")
    if a.dtype != bool:
        if not np.all(np.isin(a, (0, 1))):
            raise ValueError(f"{name} must be boolean (or 0/1)")
        a = a.astype(bool)
    return a


def _newcombe(a: np.ndarray, bb: np.ndarray, b: int, c: int, confidence: float) -> tuple[float, float]:
    """:func:`mcnemar`'s ``ci="newcombe"`` interval of ``acc_b - acc_a`` (Newcombe 1998, method 10) from the
    correctness arrays ``a`` and ``bb`` and the discordant counts ``b`` and ``c``."""
    n = int(a.size)
    acc_a, acc_b = float(a.mean()), float(bb.mean())
    diff = (c - b) / n
    both = int(np.sum(a & bb))
    neither = n - both - b - c
    l1, u1 = wilson_interval(int(bb.sum()), n, confidence)
    l2, u2 = wilson_interval(int(a.sum()), n, confidence)
    # 2x2 table rows B right/wrong, columns A right/wrong
    r1, r2, k1, k2 = both + c, b + neither, both + b, c + neither
    den = float(r1) * r2 * k1 * k2
    cross = both * neither - b * c  # Newcombe's continuity-corrected phi (his method 10)
    cross = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
    phi = cross / math.sqrt(den) if den > 0 else 0.0
    d1, d2 = acc_b - l1, u2 - acc_a
    e1, e2 = u1 - acc_b, acc_a - l2
    lo = diff - math.sqrt(max(d1 * d1 - 2 * phi * d1 * d2 + d2 * d2, 0.0))
    hi = diff + math.sqrt(max(e1 * e1 - 2 * phi * e1 * e2 + e2 * e2, 0.0))
    return lo, hi


def mcnemar(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray,
            confidence: float = 0.95, ci: str = "wald") -> dict[str, Any]:
    """Compare classifiers A and B on the SAME test images (``correct_*[i]``: image i right?).

    Counts over the N images: ``b`` = A right and B wrong, ``c`` = A wrong and B right
    (the discordant pairs; concordant pairs carry no information about the difference).
    Under H0 (equal accuracy) ``c ~ Binomial(b + c, 1/2)`` given ``b + c``. Returns a dict:

    - ``n``, ``b``, ``c``, ``acc_a``, ``acc_b``;
    - ``diff = acc_b - acc_a = (c - b) / N``;
    - ``p_value``: exact two-sided McNemar test,
      ``scipy.stats.binomtest(min(b, c), b + c, 0.5).pvalue`` = ``min(1, 2 P(X <= min(b, c)))``;
      1 when ``b + c = 0``;
    - ``p_b_better``: exact one-sided p for "B is more accurate than A" (H1: c > b),
      ``P(X >= c)`` with ``X ~ Binomial(b + c, 1/2)``; 1 when ``b + c = 0``;
    - ``lo``, ``hi``: a ``confidence`` interval for ``diff``. ``ci="wald"`` (default):
      Wald interval for paired proportions, ``diff +- z sqrt(((b + c)/N - diff^2) / N)``
      (Agresti, Categorical Data Analysis, sec. 10.1); adequate when ``b + c`` is large,
      degenerate (zero width) when ``b = c = 0``. ``ci="newcombe"``: Newcombe's (1998,
      method 10) square-and-add hybrid score interval, built from the Wilson intervals
      ``(l1, u1)`` of acc_b and ``(l2, u2)`` of acc_a and the continuity-corrected phi
      coefficient of the 2x2 table, ``phi = A' / sqrt(product of the four margins)`` with
      ``A = both*neither - b*c``, ``A' = A - N/2`` if ``A > N/2``, 0 if ``0 <= A <= N/2``,
      ``A`` if ``A < 0`` (phi = 0 when a margin is empty):
      ``lo = diff - sqrt((acc_b-l1)^2 - 2 phi (acc_b-l1)(u2-acc_a) + (u2-acc_a)^2)``,
      ``hi = diff + sqrt((u1-acc_b)^2 - 2 phi (u1-acc_b)(acc_a-l2) + (acc_a-l2)^2)``;
      better behaved for small counts and never outside [-1, 1].
    - ``ci``: which interval was used.
    """
    a = _as_bool(correct_a, "correct_a")
    bb = _as_bool(correct_b, "correct_b")
    if a.shape != bb.shape:
        raise ValueError(f"correct_a and correct_b must have the same length, got {a.size} and {bb.size}")
    n = int(a.size)
    if n == 0:
        raise ValueError("mcnemar needs at least one image")
    b = int(np.sum(a & ~bb))
    c = int(np.sum(~a & bb))
    acc_a, acc_b = float(a.mean()), float(bb.mean())
    diff = (c - b) / n
    m = b + c
    if m == 0:
        p_two, p_one = 1.0, 1.0
    else:
        p_two = float(_st.binomtest(min(b, c), m, 0.5).pvalue)
        p_one = float(_st.binomtest(c, m, 0.5, alternative="greater").pvalue)
    z = z_value(confidence)
    if ci == "wald":
        var = max((m / n - diff * diff) / n, 0.0)
        lo, hi = diff - z * math.sqrt(var), diff + z * math.sqrt(var)
    elif ci == "newcombe":
        lo, hi = _newcombe(a, bb, b, c, confidence)
    else:
        raise ValueError(f"ci must be 'wald' or 'newcombe', got {ci!r}")
    return {"n": n, "b": b, "c": c, "acc_a": acc_a, "acc_b": acc_b, "diff": diff,
            "p_value": p_two, "p_b_better": p_one, "lo": float(lo), "hi": float(hi), "ci": ci}


# --------------------------------------------------------------------------- bootstrap
_RNG_KW = "rng" if "rng" in inspect.signature(_st.bootstrap).parameters else "random_state"


def _accepts_axis(statistic: Callable, samples: Sequence[np.ndarray]) -> bool:
    """Whether ``statistic(*samples, axis=-1)`` works on 2-d stacks and matches the 1-d value."""
    head = [s[: min(len(s), 5)] for s in samples]
    try:
        stacked = statistic(*[np.stack([h, h[::-1]]) for h in head], axis=-1)
        plain = statistic(*head)
    except Exception:  # noqa: BLE001 - any failure means "not vectorised"
        return False
    stacked = np.asarray(stacked, dtype=float)
    return stacked.shape == (2,) and bool(np.allclose(stacked[0], float(plain), equal_nan=True))


def _vectorise(statistic: Callable, samples: Sequence[np.ndarray]) -> Callable:
    """``statistic`` as a function of (..., n) arrays reducing the last axis, as scipy wants."""
    if _accepts_axis(statistic, samples):
        return lambda *xs, axis=-1: statistic(*xs, axis=axis)

    def looped(*xs, axis=-1):
        xs = [np.moveaxis(np.asarray(x), axis, -1) for x in xs]
        lead = xs[0].shape[:-1]
        flat = [x.reshape(-1, x.shape[-1]) for x in xs]
        out = np.array([float(statistic(*rows)) for rows in zip(*flat)], dtype=float)
        return out.reshape(lead)
    return looped


def _batch(n_total: int, max_elements: int) -> int:
    """Resamples per batch so that a batch holds about ``max_elements`` indices."""
    return max(1, int(max_elements // max(n_total, 1)))


def _bootstrap(samples: Sequence[np.ndarray], stat: Callable, n_boot: int, confidence: float, seed: int,
               paired: bool, max_elements: int) -> tuple[float, float, float]:
    """``(lo, hi, se)`` of the percentile bootstrap of ``stat``; checks the resampling arguments."""
    checks.count(n_boot, "n_boot")
    checks.count(max_elements, "max_elements")
    n_total = sum(len(s) for s in samples)
    res = _st.bootstrap(tuple(samples), stat, n_resamples=int(n_boot), batch=_batch(n_total, max_elements),
                        vectorized=True, paired=paired, axis=-1, confidence_level=confidence,
                        method="percentile", **{_RNG_KW: np.random.default_rng(seed)})
    return float(res.confidence_interval.low), float(res.confidence_interval.high), float(res.standard_error)


def _as_samples(x: Any) -> list[np.ndarray]:
    """One 1-d sample, or a tuple/list of them, as a list of float arrays."""
    if not (isinstance(x, (tuple, list)) and len(x) > 0 and all(np.ndim(s) == 1 for s in x)):
        x = (x,)
    out = []
    for s in x:
        a = checks.float_array(s, "samples")
        if a.ndim != 1 or a.size < 2:
            raise ValueError(f"each sample must be 1-d with at least 2 values, got shape {a.shape}")
        out.append(a)
    return out


def bootstrap_ci(samples: Any, statistic: Callable[..., Any], n_boot: int = 2000, confidence: float = 0.95,
                 seed: int = 0, paired: bool = True, max_elements: int = 4_000_000) -> dict[str, float]:
    """Percentile bootstrap interval of ``statistic(*samples)``.

    ``samples``: one 1-d array, or a tuple of them. With several samples and ``paired=True``
    (default) they must have equal length and are resampled jointly (the same indices
    for all), e.g. ``bootstrap_ci((g2, kl), lambda g, k: g.mean() / k.mean())`` over pairs;
    ``paired=False`` resamples each independently. Draw ``n_boot`` resamples
    ``x*_b``; the interval is the ``(1 -+ confidence) / 2`` quantiles of ``statistic(x*_b)``.
    Returns ``dict(value, lo, hi, se)`` (``se`` = std of the bootstrap distribution).
    Deterministic given ``seed``. Uses :func:`scipy.stats.bootstrap` (``method='percentile'``)
    with resamples drawn in batches of about ``max_elements`` indices, so memory stays bounded
    (n = 26,000 and n_boot = 2,000 need ~32 MB at a time). A ``statistic`` that accepts
    ``axis=`` (np.mean, np.median) is vectorised; any other callable is applied per resample.
    """
    confidence = _check_confidence(confidence)
    checks.function(statistic, "statistic")
    checks.flag(paired, "paired")
    xs = _as_samples(samples)
    if paired and len({len(s) for s in xs}) > 1:
        raise ValueError("paired samples must have equal length")
    stat = _vectorise(statistic, xs)
    lo, hi, se = _bootstrap(xs, stat, n_boot, confidence, seed, paired and len(xs) > 1, max_elements)
    return {"value": float(statistic(*xs)), "lo": lo, "hi": hi, "se": se}


def bootstrap_diff(x_a: Sequence[float] | np.ndarray, x_b: Sequence[float] | np.ndarray,
                   statistic: Callable[..., Any] = np.mean, n_boot: int = 2000, confidence: float = 0.95,
                   seed: int = 0, paired: bool = False, max_elements: int = 4_000_000) -> dict[str, float]:
    """Percentile bootstrap interval of ``diff = statistic(x_b) - statistic(x_a)``.

    ``paired=False`` (default): two INDEPENDENT samples (lengths may differ), each resampled
    separately with replacement. ``paired=True``: ``x_a[i]`` and ``x_b[i]`` belong together
    (same images / pairs); the pairs are resampled jointly. ``statistic`` maps a 1-d array to
    a number: ``np.mean``, ``np.median``, a share ``lambda v: np.mean(v < 0)``. The interval
    is the ``(1 -+ confidence) / 2`` quantiles of ``statistic(x*_b) - statistic(x*_a)`` over
    ``n_boot`` resamples. Returns ``dict(diff, lo, hi, se)``. Deterministic given ``seed``.
    Implemented with :func:`scipy.stats.bootstrap` (see :func:`bootstrap_ci` for memory).
    """
    confidence = _check_confidence(confidence)
    checks.function(statistic, "statistic")
    checks.flag(paired, "paired")
    xa, xb = _as_samples((x_a, x_b))
    if paired and len(xa) != len(xb):
        raise ValueError(f"paired samples must have equal length, got {len(xa)} and {len(xb)}")
    one = _vectorise(statistic, [xa])
    diff_stat = lambda a, b, axis=-1: np.asarray(one(b, axis=axis)) - np.asarray(one(a, axis=axis))  # noqa: E731
    lo, hi, se = _bootstrap([xa, xb], diff_stat, n_boot, confidence, seed, paired, max_elements)
    return {"diff": float(statistic(xb)) - float(statistic(xa)), "lo": lo, "hi": hi, "se": se}


# --------------------------------------------------------------------------- trends
def rank_trend(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, method: str = "asymptotic",
               n_resamples: int = 9999, seed: int = 0) -> dict[str, Any]:
    """Spearman rank correlation of ``y`` with ``x``: is there a monotone trend?

    ``rho`` = Pearson correlation of the (average, for ties) ranks of x and y.
    Pairs where x or y is not finite are dropped; ``n`` is the number of pairs used.
    Returns ``dict(rho, p, p_positive, p_negative, n, method, note)``:

    - ``p``: two-sided p-value of H0 "no association"; ``p_positive`` / ``p_negative``:
      one-sided p for an increasing / decreasing trend.
    - ``method="asymptotic"`` (default): :func:`scipy.stats.spearmanr`, which uses
      ``t = rho sqrt((n - 2) / (1 - rho^2))`` with n - 2 degrees of freedom (approximate
      for small n). ``method="exact"``: permutation test over the pairings, via
      :func:`scipy.stats.permutation_test`: all n! orderings of y when n! <= ``n_resamples``
      (exact, n <= 7 by default), else ``n_resamples`` random ones (seeded).
    - ``n < 3`` or a constant x or y: rho and the p-values are NaN and ``note`` says why
      (a correlation is undefined there); otherwise ``note`` is "".
    """
    if method not in ("asymptotic", "exact"):
        raise ValueError(f"method must be 'asymptotic' or 'exact', got {method!r}")
    checks.count(n_resamples, "n_resamples")
    x = checks.float_array(x, "x").ravel()
    y = checks.float_array(y, "y").ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(x.size)
    nan = float("nan")
    out = {"rho": nan, "p": nan, "p_positive": nan, "p_negative": nan, "n": n, "method": method, "note": ""}
    if n < 3:
        out["note"] = f"n = {n} < 3 finite pairs: rank correlation undefined"
        return out
    if np.all(x == x[0]) or np.all(y == y[0]):
        out["note"] = "constant input: rank correlation undefined"
        return out
    if method == "asymptotic":
        rho = float(_st.spearmanr(x, y).statistic)
        p_two = float(_st.spearmanr(x, y).pvalue)
        p_pos = float(_st.spearmanr(x, y, alternative="greater").pvalue)
        p_neg = float(_st.spearmanr(x, y, alternative="less").pvalue)
    else:
        rx = _st.rankdata(x)

        def rho_of(yy: np.ndarray, axis: int = -1) -> np.ndarray:
            """Spearman's rho of each resample ``yy`` with ``x``."""
            ry = _st.rankdata(yy, axis=axis)
            rxc = rx - rx.mean()
            ryc = ry - ry.mean(axis=axis, keepdims=True)
            return (ryc @ rxc) / np.sqrt((rxc @ rxc) * np.sum(ryc * ryc, axis=axis))

        kw = {_RNG_KW: np.random.default_rng(seed)}
        res = {alt: _st.permutation_test((y,), rho_of, permutation_type="pairings", vectorized=True,
                                         n_resamples=n_resamples, alternative=alt, **kw)
               for alt in ("two-sided", "greater", "less")}
        rho = float(res["two-sided"].statistic)
        p_two, p_pos, p_neg = (float(res[a].pvalue) for a in ("two-sided", "greater", "less"))
    out.update(rho=rho, p=p_two, p_positive=p_pos, p_negative=p_neg)
    return out


# --------------------------------------------------------------------------- correlation
def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Pearson's r and its two-sided p-value (``scipy.stats.pearsonr``); ``(nan, nan)`` when
    there are fewer than 3 finite points or either variable is constant (r is undefined)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    res = _st.pearsonr(x, y)
    return float(res.statistic), float(res.pvalue)



# --------------------------------------------------------------------------- training noise
def seed_interval(effects: Sequence[float] | np.ndarray, confidence: float = 0.95) -> dict:
    """t interval of the mean of per-seed effects ``d_1..d_n`` (e.g. accuracy of the larger model
    minus the smaller, one value per training seed)::

        mean +- t_{(1 + confidence) / 2, n - 1} * sd / sqrt(n),   sd with ddof 1

    Returns ``dict(mean, lo, hi, sd, n)``; ``n < 2`` gives NaN bounds (one run says nothing about
    training noise). Equals ``scipy.stats.t.interval(confidence, n - 1, mean, sd / sqrt(n))``.
    """
    confidence = _check_confidence(confidence)
    d = np.asarray(effects, dtype=float).ravel()
    if d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError("seed_interval needs finite per-seed effects")
    n, mean = int(d.size), float(d.mean())
    if n < 2:
        return {"mean": mean, "lo": math.nan, "hi": math.nan, "sd": math.nan, "n": n}
    sd = float(d.std(ddof=1))
    half = float(_st.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "sd": sd, "n": n}


def seed_test(values: Sequence[float] | np.ndarray, null: float = 0.0, confidence: float = 0.95) -> dict:
    """One-sample t test of per-seed values ``d_1..d_n`` against ``null``, with its t interval.

    ``t = (mean - null) / (sd / sqrt(n))`` on ``n - 1`` degrees of freedom (:func:`scipy.stats.ttest_1samp`):
    ``p_above`` is the one-sided p for "the mean exceeds ``null``", ``p_below`` for "it is below", ``p``
    the two-sided one (``= 2 min(p_above, p_below)``). ``lo``/``hi`` is :func:`seed_interval`. Non-finite
    values are dropped (e.g. a seed whose statistic is undefined); with fewer than two values, or
    values that do not vary, the p-values are NaN (no test is possible). Returns
    ``dict(mean, lo, hi, sd, n, p_above, p_below, p)``.
    """
    d = checks.float_array(values, "values").ravel()
    d = d[np.isfinite(d)]
    nan = math.nan
    if d.size == 0:
        return {"mean": nan, "lo": nan, "hi": nan, "sd": nan, "n": 0, "p_above": nan, "p_below": nan, "p": nan}
    out = seed_interval(d, confidence)
    out.update(p_above=nan, p_below=nan, p=nan)
    if d.size >= 2 and float(np.ptp(d)) > 0:
        out["p_above"] = float(_st.ttest_1samp(d, null, alternative="greater").pvalue)
        out["p_below"] = float(_st.ttest_1samp(d, null, alternative="less").pvalue)
        out["p"] = float(_st.ttest_1samp(d, null).pvalue)
    return out


# --------------------------------------------------------------------------- pairs of images
def weighted_mean(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Row-wise weighted mean ``sum_p w[b, p] x[p] / sum_p w[b, p]`` of one sample ``x`` under weights ``w`` (B x P)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # a row of zero weights (no pair drawn): NaN
        return (w @ x) / w.sum(axis=1)


def weighted_median(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Row-wise weighted median of ``x`` under weights ``w`` (B x P): the smallest value whose cumulative
    weight reaches half the row's total (with weights 1 for every item: the lower median). One sort of ``x``
    serves every row. NaN values of ``x`` weigh nothing; a row whose total weight is 0 gives NaN."""
    x = np.asarray(x, dtype=float)
    w = np.asarray(w, dtype=float)
    missing = np.isnan(x)
    if missing.any():
        w = np.where(missing, 0.0, w)
    order = np.argsort(x, kind="stable")
    cum = np.cumsum(w[:, order], axis=1)
    first = np.argmax(cum >= 0.5 * cum[:, -1:], axis=1)
    return np.where(cum[:, -1] > 0, x[order][first], np.nan)


def _image_weights(i: Sequence[int] | np.ndarray, j: Sequence[int] | np.ndarray, n_boot: int, seed: int,
                   batch: int):
    """The pair weights of :func:`cluster_bootstraps`, ``batch`` resamples at a time: per resample the image counts
    ``c ~ Multinomial(n, 1/n)`` over the ``n`` distinct images of ``i`` and ``j`` and pair ``p``'s weight
    ``c_{i_p} c_{j_p}`` (yields arrays of shape (b, len(i)), ``n_boot`` rows in all, from ``default_rng(seed)``)."""
    checks.count(n_boot, "n_boot")
    checks.count(batch, "batch")
    i, j = np.asarray(i), np.asarray(j)
    if i.shape != j.shape or i.ndim != 1 or i.size < 2:
        raise ValueError(f"i and j must be 1-d arrays of the same length >= 2, got shapes {i.shape} and {j.shape}")
    images, inverse = np.unique(np.concatenate([i, j]), return_inverse=True)
    ii, jj = inverse[: i.size], inverse[i.size:]
    rng = np.random.default_rng(seed)
    for start in range(0, int(n_boot), int(batch)):
        b = min(int(batch), int(n_boot) - start)
        counts = rng.multinomial(images.size, np.full(images.size, 1.0 / images.size), size=b).astype(float)
        yield counts[:, ii] * counts[:, jj]


def _bootstrap_summary(value: float, boot: np.ndarray, confidence: float, null: float) -> dict[str, float]:
    """:func:`cluster_bootstrap`'s result from the sample's ``value`` and the resampled values ``boot`` (the
    non-finite ones left out)."""
    boot = boot[np.isfinite(boot)]
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [tail, 1.0 - tail])
    p_above = (1.0 + np.sum(boot <= null)) / (boot.size + 1.0)
    p_below = (1.0 + np.sum(boot >= null)) / (boot.size + 1.0)
    return {"value": value, "lo": float(lo), "hi": float(hi), "se": float(boot.std(ddof=1)),
            "p_above": float(p_above), "p_below": float(p_below), "p": float(min(1.0, 2.0 * min(p_above, p_below)))}


def cluster_bootstraps(statistics: Mapping[Hashable, Callable[[np.ndarray], np.ndarray]], i: Sequence[int] | np.ndarray,
                       j: Sequence[int] | np.ndarray, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0,
                       null: float = 0.0, batch: int = 200) -> dict[Hashable, dict[str, float]]:
    """:func:`cluster_bootstrap` of several statistics over the same resamples: the image counts are drawn once
    (they are the bulk of the work) and every statistic sees each batch of weights. Each name's result equals
    ``cluster_bootstrap(statistics[name], i, j, ...)`` exactly, since both draw the same counts from ``seed``."""
    confidence = _check_confidence(confidence)
    if not statistics:
        raise ValueError("cluster_bootstraps needs at least one statistic")
    draws: dict[Hashable, list[np.ndarray]] = {name: [] for name in statistics}
    for w in _image_weights(i, j, n_boot, seed, batch):
        for name, statistic in statistics.items():
            draws[name].append(np.asarray(statistic(w), dtype=float))
    ones = np.ones((1, np.asarray(i).size))
    return {name: _bootstrap_summary(float(np.asarray(statistic(ones))[0]), np.concatenate(draws[name]), confidence,
                                     null) for name, statistic in statistics.items()}


def cluster_bootstrap(statistic: Callable[[np.ndarray], np.ndarray], i: Sequence[int] | np.ndarray,
                      j: Sequence[int] | np.ndarray, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0,
                      null: float = 0.0, batch: int = 200) -> dict[str, float]:
    """Bootstrap of a statistic over pairs ``(i[p], j[p])`` of images that resamples IMAGES, not pairs.

    Pairs that share an image are not independent, so the unit of resampling is the image: each
    resample draws the distinct images with replacement (counts ``c ~ Multinomial(n, 1/n)``) and gives
    pair ``p`` the weight ``w_p = c_{i_p} c_{j_p}``, the number of times that pair appears among the pairs
    of the resampled images (Snijders and Borgatti's vertex bootstrap for dyadic data; Owen's pigeonhole
    bootstrap has the same product weights). It errs on the safe side: for pairs that share no image its
    standard error is about sqrt(3) times the pair bootstrap's (``Var(c_i c_j) = 3``), and where images are
    shared it carries the variance their reuse adds, which a pair bootstrap misses.
    ``statistic(w)`` maps weights ``w`` (B x P; all ones = the sample itself)
    to B values, e.g. ``lambda w: weighted_mean(w, kl_b) - weighted_mean(w, kl_a)``; it is called on
    ``batch`` resamples at a time. Returns
    ``dict(value, lo, hi, se, p_above, p_below, p)``: the percentile interval, the standard error and
    bootstrap p-values against ``null``, ``p_above = (1 + #{stat* <= null}) / (B + 1)`` (for "above
    null"), ``p_below`` likewise, ``p = min(1, 2 min(p_above, p_below))``, consistent with the interval;
    resamples where the statistic is not finite are left out. Several statistics over the same resamples:
    :func:`cluster_bootstraps`.
    """
    return cluster_bootstraps({"statistic": statistic}, i, j, n_boot, confidence, seed, null, batch)["statistic"]


# --------------------------------------------------------------------------- multiplicity
def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values of one family of ``m`` tests (NaN entries are not tests:
    they stay NaN and do not count in ``m``). With the finite p-values sorted, ``p_(1) <= ... <= p_(m)``::

        adj_(k) = max_{l <= k} min(1, (m - l + 1) p_(l))

    Rejecting where ``adj <= alpha`` is Holm's procedure: the family-wise error rate is at most alpha
    under any dependence between the tests (Holm 1979)."""
    p = checks.float_array(p_values, "p_values").ravel()
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if finite.size == 0:
        return out
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


# --------------------------------------------------------------------------- verdicts
def directional_verdict(p_two: float, effect: float, expected_sign: int, alpha: float = 0.05) -> str:
    """Verdict from a (possibly multiplicity-adjusted) two-sided p-value and the effect's sign:
    ``p_two < alpha`` decides, in the direction of ``effect`` ("yes" if it has ``expected_sign``,
    else "no"); otherwise, or with a NaN, "inconclusive"."""
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
    p_two, effect = checks.real(p_two, "p_two"), checks.real(effect, "effect")
    if math.isnan(p_two) or math.isnan(effect) or not p_two < alpha or effect == 0:
        return INCONCLUSIVE
    return HOLDS if (effect > 0) == (expected_sign > 0) else DOES_NOT_HOLD


def verdict(lo: float, hi: float, expected_sign: int | str = 1, null: float = 0.0) -> str:
    """Three-way verdict of a claim from a confidence interval ``[lo, hi]`` for an effect.

    ``expected_sign``: +1 (or "+", "positive", ">") if the claim says the effect is above
    ``null`` (default 0; use 1 for a ratio), -1 (or "-", "negative", "<") if below.
    - the interval lies entirely on the expected side of ``null`` -> "yes" (:data:`HOLDS`);
    - it lies entirely on the other side -> "no" (:data:`DOES_NOT_HOLD`);
    - it contains ``null`` (touching counts as containing), or a bound is NaN -> "inconclusive".
    """
    sign = {"+": 1, "positive": 1, ">": 1, "-": -1, "negative": -1, "<": -1}.get(expected_sign, expected_sign)
    if sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or -1 (or '+'/'-'), got {expected_sign!r}")
    lo, hi = checks.real(lo, "lo"), checks.real(hi, "hi")
    if math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE
    if lo > hi:
        raise ValueError(f"interval has lo > hi: [{lo}, {hi}]")
    if lo > null:
        side = 1
    elif hi < null:
        side = -1
    else:
        return INCONCLUSIVE
    return HOLDS if side == sign else DOES_NOT_HOLD


def test_verdict(p_expected: float, p_opposite: float, alpha: float = 0.05) -> str:
    """Three-way verdict of a claim from two one-sided tests of the same data.

    ``p_expected``: one-sided p-value for the claimed direction (e.g. "B is more accurate");
    ``p_opposite``: one-sided p-value for the other direction. "yes" if ``p_expected < alpha``,
    "no" if ``p_opposite < alpha``, else (or if either is NaN) "inconclusive".
    """
    if not 0.0 < checks.real(alpha, "alpha") < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p_expected, p_opposite = checks.real(p_expected, "p_expected"), checks.real(p_opposite, "p_opposite")
    if math.isnan(p_expected) or math.isnan(p_opposite):
        return INCONCLUSIVE
    if p_expected < alpha:
        return HOLDS
    if p_opposite < alpha:
        return DOES_NOT_HOLD
    return INCONCLUSIVE
