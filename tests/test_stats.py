"""cckl_core.stats against scipy, closed forms and brute force."""
import itertools
import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as st

from cckl_core import stats as S
from conftest import type_error_naming

Z95 = 1.959963984540054


# --------------------------------------------------------------------------- wilson_interval
def _wilson_by_root_finding(s, n, z):
    """The Wilson interval is {p0 : |s/n - p0| <= z sqrt(p0 (1 - p0) / n)}: find its ends numerically."""
    ph = s / n
    f = lambda p0: (ph - p0) ** 2 - z * z * p0 * (1 - p0) / n  # noqa: E731
    lo = 0.0 if s == 0 else optimize.brentq(f, 1e-15, ph, xtol=1e-14)
    hi = 1.0 if s == n else optimize.brentq(f, ph, 1 - 1e-15, xtol=1e-14)
    return lo, hi


def test_wilson_textbook_value():
    lo, hi = S.wilson_interval(81, 263)
    assert round(lo, 4) == 0.2553 and round(hi, 4) == 0.3662


def test_z_value():
    assert S.z_value(0.95) == pytest.approx(Z95, abs=1e-12)
    with pytest.raises(ValueError):
        S.z_value(1.0)


@pytest.mark.parametrize("s,n", [(1, 10), (5, 10), (81, 263), (9990, 10000), (3, 7), (250, 1000)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_matches_root_finding_and_scipy(s, n, confidence):
    z = st.norm.ppf(0.5 + confidence / 2)
    lo, hi = S.wilson_interval(s, n, confidence)
    assert (lo, hi) == pytest.approx(_wilson_by_root_finding(s, n, z), abs=1e-10)
    ref = st.binomtest(s, n).proportion_ci(confidence_level=confidence, method="wilson")
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-10)


@pytest.mark.parametrize("n", [1, 10, 263, 10000])
def test_wilson_edges(n):
    z2 = Z95 ** 2
    lo, hi = S.wilson_interval(0, n)
    assert lo == 0.0 and hi == pytest.approx(z2 / (n + z2), rel=1e-12)
    lo, hi = S.wilson_interval(n, n)
    assert hi == 1.0 and lo == pytest.approx(n / (n + z2), rel=1e-12)


def test_wilson_vectorised_and_errors():
    s = np.array([0, 3, 81, 10])
    n = np.array([10, 10, 263, 10])
    lo, hi = S.wilson_interval(s, n)
    for i in range(len(s)):
        assert (lo[i], hi[i]) == pytest.approx(S.wilson_interval(int(s[i]), int(n[i])), abs=1e-15)
    assert np.all(lo <= s / n) and np.all(s / n <= hi)
    lo99, hi99 = S.wilson_interval(s, n, 0.99)
    assert np.all(lo99 <= lo) and np.all(hi99 >= hi)
    with pytest.raises(ValueError, match="n >= 1"):
        S.wilson_interval(0, 0)
    with pytest.raises(ValueError):
        S.wilson_interval(11, 10)
    with pytest.raises(ValueError):
        S.wilson_interval(-1, 10)


# --------------------------------------------------------------------------- mcnemar
def _paired(b, c, both=0, neither=0):
    a = np.array([1] * b + [0] * c + [1] * both + [0] * neither, dtype=bool)
    bb = np.array([0] * b + [1] * c + [1] * both + [0] * neither, dtype=bool)
    return a, bb


def _brute_binomial_p(b, c):
    """Exact McNemar by enumerating Binomial(b + c, 1/2): two-sided = total mass of outcomes no
    likelier than the observed one; one-sided = P(X >= c)."""
    m = b + c
    pmf = [math.comb(m, k) / 2 ** m for k in range(m + 1)]
    obs = pmf[c]
    two = sum(p for p in pmf if p <= obs * (1 + 1e-12))
    one = sum(pmf[c:])
    return min(1.0, two), one


def test_mcnemar_counts_and_diff():
    a, bb = _paired(b=3, c=7, both=20, neither=10)
    r = S.mcnemar(a, bb)
    assert (r["n"], r["b"], r["c"]) == (40, 3, 7)
    assert r["acc_a"] == pytest.approx(23 / 40) and r["acc_b"] == pytest.approx(27 / 40)
    assert r["diff"] == pytest.approx(4 / 40)
    assert S.mcnemar(a.astype(int), bb.astype(int))["p_value"] == r["p_value"]


@pytest.mark.parametrize("b,c", [(b, c) for b in range(0, 9) for c in range(0, 9) if b + c > 0])
def test_mcnemar_p_against_binomtest_and_enumeration(b, c):
    r = S.mcnemar(*_paired(b, c, both=5, neither=2))
    assert r["p_value"] == pytest.approx(st.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-12)
    assert r["p_b_better"] == pytest.approx(st.binomtest(c, b + c, 0.5, alternative="greater").pvalue, rel=1e-12)
    two, one = _brute_binomial_p(b, c)
    assert r["p_value"] == pytest.approx(two, rel=1e-10)
    assert r["p_b_better"] == pytest.approx(one, rel=1e-10)


def test_mcnemar_textbook_example():
    # Cavo et al. 2012 as analysed in Fagerland, Lydersen & Laake, "Statistical Analysis of
    # Contingency Tables" (2017), ch. 8: table [[59, 6], [16, 80]], delta = pi_1+ - pi_+1.
    # Rows = B right / wrong, columns = A right / wrong: b = 16, c = 6.
    a, bb = _paired(b=16, c=6, both=59, neither=80)
    r = S.mcnemar(a, bb)
    assert round(r["diff"], 4) == -0.0621
    assert round(r["p_value"], 6) == 0.052479  # McNemar exact conditional test
    assert (round(r["lo"], 4), round(r["hi"], 4)) == (-0.1184, -0.0058)  # Wald
    rn = S.mcnemar(a, bb, ci="newcombe")
    assert (round(rn["lo"], 4), round(rn["hi"], 4)) == (-0.1186, -0.0046)  # Newcombe square-and-add


def test_mcnemar_no_discordant_pairs():
    r = S.mcnemar(*_paired(0, 0, both=30, neither=10))
    assert r["p_value"] == 1.0 and r["p_b_better"] == 1.0 and r["diff"] == 0.0
    assert r["lo"] == r["hi"] == 0.0  # Wald degenerates
    rn = S.mcnemar(*_paired(0, 0, both=30, neither=10), ci="newcombe")
    assert rn["lo"] < 0 < rn["hi"]


def test_mcnemar_wald_closed_form_and_newcombe():
    a, bb = _paired(b=40, c=70, both=700, neither=190)
    n = 1000
    d = 30 / n
    se = math.sqrt((110 / n - d * d) / n)
    r = S.mcnemar(a, bb)
    assert (r["lo"], r["hi"]) == pytest.approx((d - Z95 * se, d + Z95 * se), abs=1e-12)
    rn = S.mcnemar(a, bb, ci="newcombe")
    assert rn["lo"] < d < rn["hi"]
    assert (rn["lo"], rn["hi"]) == pytest.approx((r["lo"], r["hi"]), abs=2e-3)  # agree at large counts
    small = S.mcnemar(*_paired(b=0, c=3, both=2, neither=0), ci="newcombe")
    assert -1.0 <= small["lo"] < small["diff"] < small["hi"] <= 1.0
    with pytest.raises(ValueError):
        S.mcnemar(a, bb[:-1])
    with pytest.raises(ValueError):
        S.mcnemar(a, bb, ci="exact")


@pytest.mark.parametrize("ci", ["wald", "newcombe"])
def test_mcnemar_interval_coverage(ci):
    rng = np.random.default_rng(1)
    # joint distribution of (A right, B right): P(1,1)=.6, P(1,0)=.08, P(0,1)=.12, P(0,0)=.2 -> true diff .04
    cells = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=bool)
    hits = 0
    reps = 400
    for _ in range(reps):
        draw = cells[rng.choice(4, size=400, p=[0.6, 0.08, 0.12, 0.2])]
        r = S.mcnemar(draw[:, 0], draw[:, 1], ci=ci)
        hits += r["lo"] <= 0.04 <= r["hi"]
    assert 0.91 <= hits / reps <= 0.99


# --------------------------------------------------------------------------- bootstrap
def _numpy_percentile_bootstrap(x_a, x_b, statistic, n_boot, confidence, seed):
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(x_a), size=(n_boot, len(x_a)))
    ib = rng.integers(0, len(x_b), size=(n_boot, len(x_b)))
    d = statistic(x_b[ib], axis=1) - statistic(x_a[ia], axis=1)
    a = (1 - confidence) / 2
    return np.quantile(d, a), np.quantile(d, 1 - a)


@pytest.mark.parametrize("statistic", [np.mean, np.median])
def test_bootstrap_diff_agrees_with_plain_numpy(statistic):
    rng = np.random.default_rng(0)
    x_a = rng.normal(0.0, 1.0, 60)
    x_b = rng.normal(0.5, 2.0, 80)
    r = S.bootstrap_diff(x_a, x_b, statistic, n_boot=4000, seed=1)
    lo, hi = _numpy_percentile_bootstrap(x_a, x_b, statistic, 4000, 0.95, seed=123)
    assert r["diff"] == pytest.approx(statistic(x_b) - statistic(x_a))
    assert r["lo"] == pytest.approx(lo, abs=0.3 * r["se"])
    assert r["hi"] == pytest.approx(hi, abs=0.3 * r["se"])
    assert r["lo"] < r["diff"] < r["hi"]


def test_bootstrap_deterministic_and_nonvectorised_statistic():
    rng = np.random.default_rng(2)
    x_a, x_b = rng.normal(size=50), rng.normal(0.3, size=70)
    share = lambda v: np.mean(v < 0)  # noqa: E731 - no axis argument: applied per resample
    share_vec = lambda v, axis=-1: np.mean(v < 0, axis=axis)  # noqa: E731
    r1 = S.bootstrap_diff(x_a, x_b, share, n_boot=300, seed=5)
    r2 = S.bootstrap_diff(x_a, x_b, share, n_boot=300, seed=5)
    r3 = S.bootstrap_diff(x_a, x_b, share_vec, n_boot=300, seed=5)
    r4 = S.bootstrap_diff(x_a, x_b, share, n_boot=300, seed=6)
    assert r1 == r2
    assert (r3["lo"], r3["hi"]) == pytest.approx((r1["lo"], r1["hi"]), abs=1e-12)
    assert r4 != r1
    # batching (bounded memory) changes nothing but Monte-Carlo noise
    r5 = S.bootstrap_diff(x_a, x_b, np.mean, n_boot=2000, seed=5, max_elements=500)
    r6 = S.bootstrap_diff(x_a, x_b, np.mean, n_boot=2000, seed=5)
    assert r5["lo"] == pytest.approx(r6["lo"], abs=0.3 * r6["se"])


def test_bootstrap_diff_coverage():
    rng = np.random.default_rng(3)
    true = 0.5
    reps, hits = 200, 0
    for i in range(reps):
        x_a = rng.normal(0.0, 1.0, 40)
        x_b = rng.normal(true, 1.5, 50)
        r = S.bootstrap_diff(x_a, x_b, np.mean, n_boot=500, seed=i)
        hits += r["lo"] <= true <= r["hi"]
    assert 0.88 <= hits / reps <= 0.99


def test_bootstrap_paired():
    rng = np.random.default_rng(4)
    common = rng.normal(0, 3, 200)
    x_a = common + rng.normal(0, 0.2, 200)
    x_b = common + 0.1 + rng.normal(0, 0.2, 200)
    paired = S.bootstrap_diff(x_a, x_b, np.mean, n_boot=2000, paired=True)
    indep = S.bootstrap_diff(x_a, x_b, np.mean, n_boot=2000)
    assert paired["hi"] - paired["lo"] < 0.3 * (indep["hi"] - indep["lo"])
    assert paired["lo"] > 0  # the shared component cancels only when pairs are kept together
    assert indep["lo"] < 0 < indep["hi"]
    # a paired difference of means is the mean of per-pair differences
    single = S.bootstrap_ci(x_b - x_a, np.mean, n_boot=2000, seed=9)
    assert (paired["lo"], paired["hi"]) == pytest.approx((single["lo"], single["hi"]), abs=0.3 * single["se"])
    with pytest.raises(ValueError):
        S.bootstrap_diff(x_a, x_b[:-1], np.mean, paired=True)
    with pytest.raises(ValueError):
        S.bootstrap_ci([], np.mean)
    with pytest.raises(ValueError):
        S.bootstrap_ci([1.0], np.mean)
    # a plain list is one sample, as is a 1-d array
    assert S.bootstrap_ci(list(x_a), np.mean, n_boot=200) == S.bootstrap_ci(x_a, np.mean, n_boot=200)


def test_bootstrap_ci_ratio_of_paired_means():
    rng = np.random.default_rng(5)
    kl = rng.gamma(2.0, 1.0, 300)
    g2 = 0.4 * kl + rng.normal(0, 0.1, 300)
    r = S.bootstrap_ci((g2, kl), lambda g, k: g.mean() / k.mean(), n_boot=1000)
    assert r["value"] == pytest.approx(g2.mean() / kl.mean())
    assert r["lo"] < 0.4 < r["hi"] and r["hi"] - r["lo"] < 0.05
    # plain numpy oracle for the same paired resampling
    idx = np.random.default_rng(0).integers(0, 300, size=(4000, 300))
    ratios = g2[idx].mean(1) / kl[idx].mean(1)
    assert r["lo"] == pytest.approx(np.quantile(ratios, 0.025), abs=0.3 * r["se"])
    assert r["hi"] == pytest.approx(np.quantile(ratios, 0.975), abs=0.3 * r["se"])


# --------------------------------------------------------------------------- rank_trend
def _ranks(v):
    """Average ranks (1-based) by counting: #(v_j < v_i) + (#(v_j == v_i) + 1) / 2."""
    v = np.asarray(v, dtype=float)
    return np.array([(v < t).sum() + ((v == t).sum() + 1) / 2 for t in v])


def _pearson(u, v):
    u, v = u - u.mean(), v - v.mean()
    return float(u @ v / math.sqrt((u @ u) * (v @ v)))


@pytest.mark.parametrize("seed", range(4))
def test_rank_trend_against_scipy(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=30)
    y = 0.3 * x + rng.normal(size=30)
    if seed == 3:
        y = np.round(y)  # ties
    r = S.rank_trend(x, y)
    ref = st.spearmanr(x, y)
    assert r["rho"] == pytest.approx(ref.statistic, abs=1e-12)
    assert r["rho"] == pytest.approx(_pearson(_ranks(x), _ranks(y)), abs=1e-12)
    assert r["p"] == pytest.approx(ref.pvalue, rel=1e-10)
    assert r["p_positive"] == pytest.approx(st.spearmanr(x, y, alternative="greater").pvalue, rel=1e-10)
    assert r["p_negative"] == pytest.approx(1 - r["p_positive"], abs=1e-12)
    assert r["n"] == 30 and r["note"] == ""


@pytest.mark.parametrize("y", [[2, 1, 4, 3, 6, 5], [6, 5, 4, 1, 2, 3], [1, 3, 2, 2, 5, 4], [3, 1, 6, 2, 5, 4]])
def test_rank_trend_exact_by_enumerating_permutations(y):
    x = np.arange(6.0)
    y = np.asarray(y, dtype=float)
    rx, ry = _ranks(x), _ranks(y)
    obs = _pearson(rx, ry)
    null = np.array([_pearson(rx, ry[list(perm)]) for perm in itertools.permutations(range(6))])
    eps = 1e-12
    p_pos = np.mean(null >= obs - eps)
    p_neg = np.mean(null <= obs + eps)
    r = S.rank_trend(x, y, method="exact")
    assert r["rho"] == pytest.approx(obs, abs=1e-12)
    assert r["p_positive"] == pytest.approx(p_pos, abs=1e-12)
    assert r["p_negative"] == pytest.approx(p_neg, abs=1e-12)
    assert r["p"] == pytest.approx(min(1.0, 2 * min(p_pos, p_neg)), abs=1e-12)
    # scipy's t-approximation is only roughly the exact value at n = 6
    assert S.rank_trend(x, y)["p"] == pytest.approx(r["p"], abs=0.06)


def test_rank_trend_degenerate_inputs():
    r = S.rank_trend([1, 2], [2, 1])
    assert math.isnan(r["rho"]) and math.isnan(r["p"]) and "n = 2" in r["note"]
    r = S.rank_trend([1, 2, 3, 4], [5, 5, 5, 5])
    assert math.isnan(r["rho"]) and "constant" in r["note"]
    r = S.rank_trend([1, 2, np.nan, 4, 5], [1, 3, 2, np.inf, 6])
    assert r["n"] == 3 and r["rho"] == pytest.approx(st.spearmanr([1, 2, 5], [1, 3, 6]).statistic)
    with pytest.raises(ValueError):
        S.rank_trend([1, 2, 3], [1, 2])
    with pytest.raises(ValueError):
        S.rank_trend([1, 2, 3], [1, 2, 3], method="kendall")


# --------------------------------------------------------------------------- verdict
@pytest.mark.parametrize("lo,hi,sign,null,expected", [
    (0.1, 0.3, 1, 0.0, S.HOLDS),
    (0.1, 0.3, -1, 0.0, S.DOES_NOT_HOLD),
    (-0.3, -0.1, "-", 0.0, S.HOLDS),
    (-0.3, -0.1, "+", 0.0, S.DOES_NOT_HOLD),
    (-0.1, 0.2, 1, 0.0, S.INCONCLUSIVE),
    (0.0, 0.2, 1, 0.0, S.INCONCLUSIVE),  # touching the null is not excluding it
    (1.1, 1.4, ">", 1.0, S.HOLDS),
    (0.5, 0.9, ">", 1.0, S.DOES_NOT_HOLD),
    (float("nan"), 0.3, 1, 0.0, S.INCONCLUSIVE),
])
def test_verdict(lo, hi, sign, null, expected):
    assert S.verdict(lo, hi, sign, null=null) == expected


def test_verdict_errors():
    with pytest.raises(ValueError):
        S.verdict(0.1, 0.2, 0)
    with pytest.raises(ValueError):
        S.verdict(0.3, 0.2, 1)


# --------------------------------------------------------------------------- pairs of images
def _lower_median_of_repeats(row, x):
    """The lower median of the sample in which ``x[p]`` appears ``row[p]`` times (NaN values left out); NaN if empty."""
    rep = sorted(v for v, k in zip(x, row) if not math.isnan(v) for _ in range(int(k)))
    return rep[(len(rep) - 1) // 2] if rep else math.nan


@pytest.mark.parametrize("nan_share", [0.0, 0.3])
def test_weighted_median_against_a_loop_over_rows(nan_share):
    rng = np.random.default_rng(5)
    for _ in range(60):
        x = rng.normal(size=rng.integers(1, 12))
        x[rng.random(x.size) < nan_share] = np.nan
        w = rng.integers(0, 4, size=(4, x.size)).astype(float)
        w[1] = 0.0  # a row that draws nothing
        got = S.weighted_median(w, x)
        want = [_lower_median_of_repeats(row, x) for row in w]
        np.testing.assert_array_equal(got, want)


def _cluster_bootstrap_by_loops(statistics, i, j, n_boot, seed, null=0.0, confidence=0.95):
    """The reference: one resample at a time, the counts drawn row by row from the same generator, each pair's
    weight and each statistic's value computed by a Python loop, the summary by counting."""
    images = sorted(set(i) | set(j))
    where = {im: k for k, im in enumerate(images)}
    rng = np.random.default_rng(seed)
    boot = {name: [] for name in statistics}
    for _ in range(n_boot):
        counts = rng.multinomial(len(images), [1.0 / len(images)] * len(images))
        w = [float(counts[where[a]] * counts[where[b]]) for a, b in zip(i, j)]
        for name, stat in statistics.items():
            boot[name].append(stat(w))
    out = {}
    for name, stat in statistics.items():
        b = np.array([v for v in boot[name] if math.isfinite(v)])
        tail = (1 - confidence) / 2
        p_above = (1 + sum(v <= null for v in b)) / (len(b) + 1)
        p_below = (1 + sum(v >= null for v in b)) / (len(b) + 1)
        out[name] = {"value": stat([1.0] * len(i)), "lo": np.quantile(b, tail), "hi": np.quantile(b, 1 - tail),
                     "se": np.std(b, ddof=1), "p_above": p_above, "p_below": p_below,
                     "p": min(1.0, 2 * min(p_above, p_below))}
    return out


def _loop_mean(w, x):
    num = sum(wp * xp for wp, xp in zip(w, x) if not math.isnan(xp))
    den = sum(wp for wp, xp in zip(w, x) if not math.isnan(xp))
    return num / den if den > 0 else math.nan


@pytest.mark.parametrize("nan_share", [0.0, 0.25])
def test_cluster_bootstraps_against_a_loop_over_resamples(nan_share):
    rng = np.random.default_rng(11)
    n_img, n_pairs = 12, 30
    i = rng.integers(0, n_img, n_pairs)
    j = (i + rng.integers(1, n_img, n_pairs)) % n_img
    x = rng.normal(size=n_pairs) + 0.2
    x[rng.random(n_pairs) < nan_share] = np.nan
    ok = np.isfinite(x)
    fast = {"median": lambda w: S.weighted_median(w, x),
            "mean": lambda w: S.weighted_mean(w * ok, np.where(ok, x, 0.0))}
    slow = {"median": lambda w: _lower_median_of_repeats(w, x), "mean": lambda w: _loop_mean(w, x)}
    got = S.cluster_bootstraps(fast, i, j, n_boot=300, seed=4, batch=64)
    want = _cluster_bootstrap_by_loops(slow, list(i), list(j), 300, seed=4)
    assert got["median"] == pytest.approx(want["median"], rel=0, abs=0)  # order statistics: exactly
    assert got["mean"] == pytest.approx(want["mean"], rel=1e-12)  # sums in another order
    for name, stat in fast.items():  # several statistics over one set of draws = each drawn alone, to the bit
        assert S.cluster_bootstrap(stat, i, j, n_boot=300, seed=4, batch=64) == got[name]
    assert S.cluster_bootstrap(fast["median"], i, j, n_boot=300, seed=4, batch=7) == got["median"]  # batching is invisible


def test_cluster_bootstraps_refuses_bad_input():
    with pytest.raises(ValueError, match="at least one statistic"):
        S.cluster_bootstraps({}, [0, 1], [1, 2])
    with pytest.raises(ValueError, match="same length"):
        S.cluster_bootstraps({"m": np.mean}, [0, 1], [1])


# --------------------------------------------------------------------------- argument checks
def test_statistics_refuse_strings_and_non_int_counts():
    a = np.linspace(0, 1, 10)
    cases = [
        (lambda: S.verdict("0.1", 0.2), "lo"),
        (lambda: S.test_verdict(0.01, "0.5"), "p_opposite"),
        (lambda: S.z_value("0.95"), "confidence"),
        (lambda: S.wilson_interval("81", 263), "successes"),
        (lambda: S.rank_trend(["a", "b", "c"], [1, 2, 3]), "x"),
        (lambda: S.bootstrap_ci(a, np.mean, n_boot=2.5), "n_boot"),
        (lambda: S.bootstrap_diff(a, a, n_boot=200, paired="yes"), "paired"),
        (lambda: S.bootstrap_ci(a, "mean", n_boot=10), "statistic"),
    ]
    for call, name in cases:
        with pytest.raises(TypeError) as err:
            call()
        type_error_naming(err, name)
