"""Metrics against independent oracles: brute-force pair loops and scipy.

Oracles here never call ``cckl_core.metrics``: KL is ``scipy.stats.entropy(p, q)``
(or an explicit ``sum p (log p - log q)`` from log-probabilities), JS is the square of
``scipy.spatial.distance.jensenshannon`` (base e), and CCKL is a Python loop over every
ordered pair with different labels.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax, softmax
from scipy.stats import chisquare, entropy

from cckl_core import metrics
from conftest import one_line, type_error_naming


# --------------------------------------------------------------------------- oracles
def kl_oracle(p, q) -> float:
    return float(entropy(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)))


def js_oracle(p, q) -> float:
    """scipy's JS distance squared (base e). scipy takes the square root of a round-off
    negative for (almost) identical rows and returns NaN there: that is a JS of 0."""
    with np.errstate(invalid="ignore"):
        d = jensenshannon(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64))
    return 0.0 if np.isnan(d) else float(d) ** 2


def cross_pairs(labels):
    labels = np.asarray(labels)
    return [(i, j) for i in range(len(labels)) for j in range(len(labels)) if labels[i] != labels[j]]


def cckl_oracle(probs, labels) -> float:
    """Mean of scipy KL(p_i || p_j) over every ordered pair (i, j) with y_i != y_j."""
    probs = np.asarray(probs, dtype=np.float64)
    vals = [kl_oracle(probs[i], probs[j]) for i, j in cross_pairs(labels)]
    return float(np.mean(vals))


def cckl_oracle_logits(logits, labels) -> float:
    """Same from logits: KL = sum_k p_ik (log p_ik - log p_jk) with log-softmax, no ``log 0``."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64), axis=1)
    p = np.exp(logp)
    vals = [float(np.sum(p[i] * (logp[i] - logp[j]))) for i, j in cross_pairs(labels)]
    return float(np.mean(vals))


def random_probs(rng, n, k, scale=1.0):
    return softmax(rng.normal(size=(n, k)) * scale, axis=1)


# --------------------------------------------------------------------------- kl / js
def test_kl_matches_scipy_entropy():
    rng = np.random.default_rng(0)
    for k in (2, 3, 10, 100):
        p, q = random_probs(rng, 7, k, 3.0), random_probs(rng, 7, k, 3.0)
        ours = metrics.kl(p, q).numpy()
        ref = entropy(p, q, axis=1)
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-14)


def test_kl_of_identical_rows_is_zero_and_nonnegative():
    rng = np.random.default_rng(1)
    p, q = random_probs(rng, 20, 5, 4.0), random_probs(rng, 20, 5, 4.0)
    assert torch.allclose(metrics.kl(p, p), torch.zeros(20, dtype=torch.float64), atol=1e-15)
    assert (metrics.kl(p, q) >= -1e-15).all()


def test_kl_finite_with_zeros_in_p():
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.3, 0.7]])
    q = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [1e-300, 0.5, 0.5]])
    ours = metrics.kl(p, q)
    assert torch.isfinite(ours).all()
    np.testing.assert_allclose(ours.numpy(), entropy(p, q, axis=1), rtol=1e-12)
    # exact zeros in q where p > 0: infinite, as scipy says
    assert math.isinf(float(metrics.kl([0.5, 0.5], [1.0, 0.0])))
    assert math.isinf(kl_oracle([0.5, 0.5], [1.0, 0.0]))


def test_kl_torch_float32_input():
    rng = np.random.default_rng(2)
    p, q = random_probs(rng, 4, 6), random_probs(rng, 4, 6)
    ours = metrics.kl(torch.tensor(p, dtype=torch.float32), torch.tensor(q, dtype=torch.float32))
    np.testing.assert_allclose(ours.double().numpy(), entropy(p, q, axis=1), rtol=1e-4, atol=1e-6)


def test_js_matches_scipy_jensenshannon_squared():
    rng = np.random.default_rng(3)
    for k in (2, 4, 10):
        p, q = random_probs(rng, 9, k, 5.0), random_probs(rng, 9, k, 5.0)
        ours = metrics.js(p, q).numpy()
        ref = jensenshannon(p, q, axis=1) ** 2  # scipy returns the square root, base e
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)


def test_js_with_zeros_symmetric_and_bounded():
    p = np.array([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]])
    q = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    ours = metrics.js(p, q)
    np.testing.assert_allclose(ours.numpy(), jensenshannon(p, q, axis=1) ** 2, atol=1e-14)
    assert torch.allclose(ours, metrics.js(q, p))
    assert float(ours[0]) == pytest.approx(math.log(2), abs=1e-15)  # disjoint supports: the maximum
    assert (ours <= math.log(2) + 1e-15).all()


# --------------------------------------------------------------------------- cckl
def _label_configs():
    rng = np.random.default_rng(4)
    return [
        ("balanced", np.repeat(np.arange(4), 6), 4),
        ("unbalanced", np.array([0] * 20 + [1] * 5 + [2]), 3),
        ("shuffled_unbalanced", rng.permutation(np.array([0] * 3 + [1] * 11 + [2] * 7 + [3] * 2)), 5),
        ("two_present_of_k", np.array([0] * 4 + [2] * 7), 3),  # class 1 absent
        ("pair", np.array([0, 1]), 2),
    ]


@pytest.mark.parametrize("name,labels,k", _label_configs(), ids=[c[0] for c in _label_configs()])
@pytest.mark.parametrize("scale", [0.5, 3.0, 20.0])
def test_cckl_matches_bruteforce(name, labels, k, scale):
    rng = np.random.default_rng(zlib.crc32(f"{name}-{scale}".encode()))
    probs = random_probs(rng, len(labels), k, scale)
    ours = metrics.cckl(probs, labels)
    assert ours == pytest.approx(cckl_oracle(probs, labels), rel=1e-10, abs=1e-12)
    # torch input and explicit num_classes give the same number
    assert metrics.cckl(torch.tensor(probs), torch.tensor(labels), num_classes=k) == pytest.approx(ours, rel=1e-12)


def test_cckl_near_zero_probabilities():
    rng = np.random.default_rng(5)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])
    probs = random_probs(rng, len(labels), 4)
    probs[:, 3] = 1e-250  # a class nobody predicts
    probs[0, 1] = 1e-12
    probs[4, 0] = 1e-300
    probs /= probs.sum(1, keepdims=True)
    ours = metrics.cckl(probs, labels)
    assert math.isfinite(ours)
    assert ours == pytest.approx(cckl_oracle(probs, labels), rel=1e-10)


def test_cckl_exact_zero_column_is_finite():
    """A class with probability exactly 0 for every sample contributes 0 * log 0 = 0."""
    rng = np.random.default_rng(6)
    labels = np.array([0, 1, 2, 0, 1, 2, 2])
    probs = random_probs(rng, len(labels), 4)
    probs[:, 2] = 0.0
    probs /= probs.sum(1, keepdims=True)
    ours = metrics.cckl(probs, labels)
    assert math.isfinite(ours)
    assert ours == pytest.approx(cckl_oracle(probs, labels), rel=1e-10)


def test_cckl_infinite_when_a_partner_has_exact_zero():
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.4, 0.6]])
    labels = np.array([0, 1, 1])
    assert math.isinf(cckl_oracle(probs, labels))
    assert math.isinf(metrics.cckl(probs, labels))


@pytest.mark.parametrize("scale", [1.0, 30.0, 2000.0])
def test_cckl_with_log_probs_matches_bruteforce(scale):
    """Saturated logits: softmax underflows to exact 0, log_probs keeps CCKL finite and exact."""
    rng = np.random.default_rng(int(scale))
    labels = rng.permutation(np.array([0] * 7 + [1] * 3 + [2] * 5 + [3]))
    logits = rng.normal(size=(len(labels), 4)) * scale
    t = torch.tensor(logits)
    ours = metrics.cckl(torch.softmax(t, 1), labels, log_probs=torch.log_softmax(t, 1))
    ref = cckl_oracle_logits(logits, labels)
    assert math.isfinite(ours)
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-9)
    if scale == 2000.0:  # really saturated: without log_probs it overflows
        assert (torch.softmax(t, 1) == 0).any()
        assert math.isinf(metrics.cckl(torch.softmax(t, 1), labels))


def test_cckl_float32_input_computed_in_float64():
    rng = np.random.default_rng(7)
    labels = np.array([0, 1, 2, 1, 0, 2, 2])
    probs = random_probs(rng, 7, 3, 2.0)
    ours = metrics.cckl(torch.tensor(probs, dtype=torch.float32), labels)
    assert ours == pytest.approx(cckl_oracle(probs.astype(np.float32).astype(np.float64), labels), rel=1e-6)


def test_cckl_errors():
    with pytest.raises(ValueError):
        metrics.cckl(np.full((4, 2), 0.5), np.zeros(4, dtype=int))  # one class: no cross pairs
    with pytest.raises(ValueError):
        metrics.cckl(np.full((4, 2), 0.5), np.zeros(3, dtype=int))


def test_cross_partner_counts():
    labels = np.array([0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(metrics.cross_partner_counts(labels).numpy(), [4, 4, 5, 3, 3, 3])
    assert int(metrics.cross_partner_counts(labels).sum()) == len(cross_pairs(labels))


# --------------------------------------------------------------------------- sampled pairs
def test_sample_cross_pairs_never_same_class():
    rng = np.random.default_rng(8)
    labels = rng.permutation(np.array([0] * 50 + [1] * 3 + [2] * 20 + [3] + [4] * 9))
    i, j = metrics.sample_cross_pairs(labels, 20_000, seed=3)
    assert i.shape == j.shape == (20_000,)
    assert i.dtype == np.int64 and j.dtype == np.int64
    assert (labels[i] != labels[j]).all()
    assert i.min() >= 0 and j.max() < len(labels)


def test_sample_cross_pairs_uniform_over_ordered_cross_pairs():
    labels = np.array([2, 0, 1, 0, 2, 0])  # unsorted, classes of size 3, 1, 2
    pairs = cross_pairs(labels)
    assert len(pairs) == 3 * 3 + 1 * 5 + 2 * 4
    per_pair = 400
    i, j = metrics.sample_cross_pairs(labels, per_pair * len(pairs), seed=11)
    index = {pair: n for n, pair in enumerate(pairs)}
    counts = np.zeros(len(pairs))
    for a, b in zip(i.tolist(), j.tolist()):
        counts[index[(a, b)]] += 1  # KeyError would mean a same-class pair
    assert (counts > 0).all()
    assert chisquare(counts).pvalue > 1e-3


def test_sample_cross_pairs_deterministic_and_errors():
    labels = torch.tensor([0, 1, 1, 2, 0])
    a = metrics.sample_cross_pairs(labels, 50, seed=5)
    b = metrics.sample_cross_pairs(labels, 50, seed=5)
    c = metrics.sample_cross_pairs(labels, 50, seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not (np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1]))
    assert metrics.sample_cross_pairs(labels, 0)[0].shape == (0,)
    with pytest.raises(ValueError):
        metrics.sample_cross_pairs(labels, -1)
    with pytest.raises(ValueError):
        metrics.sample_cross_pairs([3, 3, 3], 5)


# --------------------------------------------------------------------------- theorem 3.1
def test_smooth_labels():
    y = metrics.smooth_labels([0, 2], 4, 0.9)
    np.testing.assert_allclose(y.numpy(), [[0.925, 0.025, 0.025, 0.025], [0.025, 0.025, 0.925, 0.025]], atol=1e-15)
    np.testing.assert_allclose(y.sum(1).numpy(), 1.0)
    np.testing.assert_array_equal(metrics.smooth_labels([1], 3, 1.0).numpy(), [[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(metrics.smooth_labels([1], 4, 0.0).numpy(), [[0.25] * 4])
    with pytest.raises(ValueError):
        metrics.smooth_labels([0], 3, 1.5)


@pytest.mark.parametrize("k,alpha", [(2, 0.5), (3, 0.9), (10, 0.9), (10, 0.99), (100, 0.3)])
def test_js_of_smoothed_labels_matches_scipy(k, alpha):
    y = metrics.smooth_labels([0, 1], k, alpha).numpy()
    assert float(metrics.js(y[0], y[1])) == pytest.approx(js_oracle(y[0], y[1]), rel=1e-12)
    terms = metrics.theorem_terms(random_probs(np.random.default_rng(k), 4, k), [0, 1, 0, 1], alpha=alpha)
    assert terms["js"] == pytest.approx(js_oracle(y[0], y[1]), rel=1e-12)
    # every cross-class pair of smoothed labels has the same JS
    y2 = metrics.smooth_labels([k - 1, 0], k, alpha).numpy()
    assert js_oracle(y2[0], y2[1]) == pytest.approx(terms["js"], rel=1e-10)


def _bruteforce_theorem(probs, labels, alpha, k):
    """Per ordered cross pair: lhs = JS(y_i||y_j), rhs = eq. 22 (corrected); all with scipy."""
    y = np.full((len(labels), k), (1 - alpha) / k)
    y[np.arange(len(labels)), labels] += alpha
    lhs, rhs, sym = [], [], []
    for i, j in cross_pairs(labels):
        fi, fj = probs[i], probs[j]
        lhs.append(js_oracle(y[i], y[j]))
        s = kl_oracle(fi, fj) + kl_oracle(fj, fi)
        sym.append(0.5 * s)
        rhs.append(0.5 * (s + kl_oracle(y[i], fi) + kl_oracle(y[j], fj) + kl_oracle(fi, y[i]) + kl_oracle(fj, y[j])))
    return np.array(lhs), np.array(rhs), np.array(sym), y


@pytest.mark.parametrize(
    "labels,k,alpha,scale",
    [
        (np.array([0] * 9 + [1] * 2 + [2] * 4), 3, 0.9, 2.0),
        (np.array([3, 0, 0, 1, 3, 3, 3, 3, 2, 0]), 4, 0.5, 6.0),
        (np.array([0, 1] * 3 + [1] * 5), 2, 0.99, 10.0),
    ],
)
def test_theorem_terms_pair_weighted_bound_is_bruteforce_mean(labels, k, alpha, scale):
    rng = np.random.default_rng(len(labels))
    probs = random_probs(rng, len(labels), k, scale)
    t = metrics.theorem_terms(probs, labels, alpha=alpha, num_classes=k)
    lhs, rhs, sym, y = _bruteforce_theorem(probs, labels, alpha, k)

    # the plain means over samples
    l_each = np.array([kl_oracle(y[n], probs[n]) for n in range(len(labels))])
    col_each = np.array([kl_oracle(probs[n], y[n]) for n in range(len(labels))])
    assert t["L"] == pytest.approx(l_each.mean(), rel=1e-10)
    assert t["coL"] == pytest.approx(col_each.mean(), rel=1e-10)
    assert t["bound"] == pytest.approx(t["js"] - l_each.mean() - col_each.mean(), rel=1e-10, abs=1e-12)

    # mean over ordered cross pairs: E[lhs] = js, E[sym KL] = cckl, E[rhs] = cckl + L_pair + coL_pair
    assert t["js"] == pytest.approx(lhs.mean(), rel=1e-10)
    assert t["cckl"] == pytest.approx(sym.mean(), rel=1e-10)
    assert t["cckl"] == pytest.approx(cckl_oracle(probs, labels), rel=1e-10)
    assert t["L_pair"] + t["coL_pair"] == pytest.approx((rhs - sym).mean(), rel=1e-10)
    # so the pair-weighted bound is E[lhs] - E[rhs] + CCKL, and CCKL >= bound_pair <=> E[rhs] >= E[lhs]
    assert t["bound_pair"] == pytest.approx(lhs.mean() - rhs.mean() + t["cckl"], rel=1e-10, abs=1e-12)
    assert (lhs <= rhs).all()
    assert t["cckl"] >= t["bound_pair"]
    assert bool(t["holds_pair"]) and bool(t["holds"]) == (t["cckl"] >= t["bound"])
    assert t["alpha"] == alpha


def test_theorem_terms_balanced_plain_equals_pair_weighted():
    rng = np.random.default_rng(9)
    labels = rng.permutation(np.repeat(np.arange(5), 4))
    probs = random_probs(rng, len(labels), 5, 4.0)
    t = metrics.theorem_terms(probs, labels, alpha=0.8)
    assert t["L"] == pytest.approx(t["L_pair"], rel=1e-12)
    assert t["coL"] == pytest.approx(t["coL_pair"], rel=1e-12)
    assert t["bound"] == pytest.approx(t["bound_pair"], rel=1e-12, abs=1e-14)
    assert bool(t["holds"]) == bool(t["holds_pair"]) is True


def test_theorem_terms_unbalanced_plain_differs_from_pair_weighted():
    rng = np.random.default_rng(10)
    labels = np.array([0] * 12 + [1, 2])
    probs = random_probs(rng, len(labels), 3, 3.0)
    t = metrics.theorem_terms(probs, labels, alpha=0.9)
    assert abs(t["L"] - t["L_pair"]) > 1e-6
    assert bool(t["holds_pair"])


# --------------------------------------------------------------------------- per-pair inequality
@st.composite
def pair_setup(draw):
    k = draw(st.integers(2, 12))
    alpha = draw(st.floats(0.0, 1.0, exclude_min=True, exclude_max=True))
    ci = draw(st.integers(0, k - 1))
    cj = draw(st.integers(0, k - 1).filter(lambda c: c != ci))
    scale = draw(st.sampled_from([0.01, 0.3, 1.0, 5.0, 30.0, 200.0, 5000.0]))  # up to saturated
    z = draw(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=2 * k, max_size=2 * k))
    return k, alpha, ci, cj, scale, np.array(z).reshape(2, k)


@settings(max_examples=200, deadline=None)
@given(pair_setup())
def test_per_pair_inequality_property(setup):
    k, alpha, ci, cj, scale, z = setup
    f = torch.softmax(torch.tensor(z * scale, dtype=torch.float64), dim=1)
    y = metrics.smooth_labels([ci, cj], k, alpha)
    lhs, rhs = metrics.pair_inequality_sides(f[0], f[1], y[0], y[1])
    assert not torch.isnan(lhs) and not torch.isnan(rhs)
    assert float(lhs) <= float(rhs) + 1e-12 * max(1.0, float(lhs))
    # lhs is JS of the labels, by scipy
    assert float(lhs) == pytest.approx(js_oracle(y[0].numpy(), y[1].numpy()), rel=1e-9, abs=1e-15)


@st.composite
def general_pair(draw):
    k = draw(st.integers(2, 8))
    rows = draw(st.lists(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=k, max_size=k), min_size=4, max_size=4))
    scale = draw(st.sampled_from([0.1, 1.0, 4.0, 20.0]))
    return np.array(rows) * scale


@settings(max_examples=200, deadline=None)
@given(general_pair())
def test_per_pair_inequality_property_any_label_distributions(z):
    """The same inequality for arbitrary (not smoothed) y_i, y_j: still no counterexample."""
    y_i, y_j, f_i, f_j = torch.softmax(torch.tensor(z), dim=1)
    lhs, rhs = metrics.pair_inequality_sides(f_i, f_j, y_i, y_j)
    assert float(lhs) <= float(rhs) + 1e-12


def test_per_pair_inequality_batched_rows():
    rng = np.random.default_rng(12)
    labels_i, labels_j = np.array([0, 1, 2, 3]), np.array([1, 0, 3, 2])
    f_i, f_j = random_probs(rng, 4, 4, 3.0), random_probs(rng, 4, 4, 3.0)
    y_i, y_j = metrics.smooth_labels(labels_i, 4, 0.9), metrics.smooth_labels(labels_j, 4, 0.9)
    lhs, rhs = metrics.pair_inequality_sides(torch.tensor(f_i), torch.tensor(f_j), y_i, y_j)
    assert lhs.shape == rhs.shape == (4,)
    for n in range(4):
        yi, yj = y_i[n].numpy(), y_j[n].numpy()
        expected = 0.5 * (kl_oracle(f_i[n], f_j[n]) + kl_oracle(f_j[n], f_i[n]) + kl_oracle(yi, f_i[n])
                          + kl_oracle(yj, f_j[n]) + kl_oracle(f_i[n], yi) + kl_oracle(f_j[n], yj))
        assert float(rhs[n]) == pytest.approx(expected, rel=1e-10)
        assert float(lhs[n]) == pytest.approx(js_oracle(yi, yj), rel=1e-10)
    assert (lhs <= rhs).all()


# --------------------------------------------------------------------------- the paper's eq. (19)-(20)
def test_paper_eq19_20_constant_two_is_false_but_eq22_holds():
    """Appendix eq. (19)-(20) bound JS(y_i||y_j) by 2 (JS(f_i||f_j) + JS(y_i||f_i) + JS(y_j||f_j)),
    via (a+b+c)^2 <= 2(a^2+b^2+c^2) on the JS metric sqrt(JS). That inequality needs the constant 3
    (Cauchy-Schwarz), and the step fails here; the final per-pair inequality eq. 22 still holds."""
    y_i, y_j = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    f_i, f_j = np.array([2 / 3, 1 / 3]), np.array([1 / 3, 2 / 3])
    lhs = js_oracle(y_i, y_j)
    chain = js_oracle(f_i, f_j) + js_oracle(y_i, f_i) + js_oracle(y_j, f_j)
    assert lhs == pytest.approx(math.log(2))
    assert 2 * chain < lhs - 0.04  # 0.6425 < 0.6931: the paper's step (19)-(20) is false
    assert lhs <= 3 * chain  # the correct constant
    # the metric triangle inequality itself is fine
    a, b, c = (math.sqrt(js_oracle(*pq)) for pq in ((y_i, f_i), (f_i, f_j), (f_j, y_j)))
    assert math.sqrt(lhs) <= a + b + c
    # eq. 22 (corrected) for this pair: infinite right side with one-hot labels ...
    lhs_t, rhs_t = metrics.pair_inequality_sides(torch.tensor(f_i), torch.tensor(f_j), torch.tensor(y_i), torch.tensor(y_j))
    assert float(lhs_t) <= float(rhs_t)
    # ... and finite with label smoothing, where the step (19)-(20) still fails but eq. 22 holds
    y = metrics.smooth_labels([0, 1], 2, 0.99).numpy()
    lhs_s = js_oracle(y[0], y[1])
    chain_s = js_oracle(f_i, f_j) + js_oracle(y[0], f_i) + js_oracle(y[1], f_j)
    assert 2 * chain_s < lhs_s
    lhs_t, rhs_t = metrics.pair_inequality_sides(torch.tensor(f_i), torch.tensor(f_j), torch.tensor(y[0]), torch.tensor(y[1]))
    assert math.isfinite(float(rhs_t))
    assert float(lhs_t) == pytest.approx(lhs_s, rel=1e-12)
    assert float(lhs_t) <= float(rhs_t)


# --------------------------------------------------------------------------- inputs that would give a silently wrong number are refused
# Scaled probabilities (``cckl(2 * p, y)`` was exactly twice the right value), logits passed as
# probabilities (NaN), NaN, log-probabilities that are not ``log(probs)``, float labels (truncated),
# labels outside ``[0, K)``, mismatched lengths, non-int ``num_classes``, string labels.
def softmax_rows(n=12, k=4, seed=0, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(scale * torch.randn(n, k, generator=g, dtype=torch.float64), 1).to(dtype)


LABELS = torch.arange(12) % 4


def test_scaled_probs_raise_instead_of_twice_the_value():
    p = softmax_rows()
    with pytest.raises(ValueError) as err:
        metrics.cckl(2 * p, LABELS)
    msg = one_line(err)
    assert "sum to 1" in msg and "[2, 2]" in msg and "softmax(logits)" in msg


def test_logits_as_probs_raise_instead_of_nan():
    logits = 3 * torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="negative entries.*softmax"):
        metrics.cckl(logits, LABELS)
    with pytest.raises(ValueError, match="sum to 1"):
        metrics.cckl(logits.abs(), LABELS)  # non-negative logits: caught by the row sums
    with pytest.raises(ValueError, match="negative"):
        metrics.cckl(torch.log_softmax(logits, 1), LABELS)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_probs_raise(bad):
    p = softmax_rows()
    p[3, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.cckl(p, LABELS)
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.kl(p, softmax_rows(seed=2))


def test_float_labels_raise_even_when_whole_numbers():
    p = softmax_rows()
    for labels in (LABELS.float(), LABELS.double() + 0.5, [0.0, 1.0] * 6, LABELS.bool()):
        with pytest.raises(ValueError) as err:
            metrics.cckl(p, labels)
        assert "integer class indices" in one_line(err)
    with pytest.raises(ValueError, match="integer"):
        metrics.theorem_terms(p, LABELS.float())


@pytest.mark.parametrize("bad", [4, -1])
def test_labels_out_of_range_raise(bad):
    labels = LABELS.clone()
    labels[0] = bad
    with pytest.raises(ValueError, match=r"in \[0, 4\) \(K = 4 classes\)") as err:
        metrics.cckl(softmax_rows(), labels)
    assert "got values in" in one_line(err)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        metrics.theorem_terms(softmax_rows(), labels)
    with pytest.raises(ValueError, match="class indices"):
        metrics.smooth_labels(labels, 4, 0.9)


def test_length_and_shape_mismatch_raise():
    p = softmax_rows()
    with pytest.raises(ValueError, match=r"shape \(12,\)"):
        metrics.cckl(p, LABELS[:11])
    with pytest.raises(ValueError, match=r"shape \(12,\)"):
        metrics.cckl(p, LABELS.view(3, 4))
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        metrics.cckl(p[0], LABELS[:1])
    with pytest.raises(ValueError, match="same number of classes"):
        metrics.kl(p, softmax_rows(k=5))
    with pytest.raises(ValueError, match="broadcastable shapes"):
        metrics.js(p, softmax_rows(n=5))
    with pytest.raises(ValueError, match="num_classes=5 but probs has 4 columns"):
        metrics.theorem_terms(p, LABELS, num_classes=5)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        metrics.cckl(p, LABELS, num_classes=2.5)


def test_log_probs_must_be_log_of_probs():
    logits = 3 * torch.randn(12, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    p, logp = torch.softmax(logits, 1), torch.log_softmax(logits, 1)
    assert metrics.cckl(p, LABELS, log_probs=logp) == pytest.approx(metrics.cckl(p, LABELS), rel=1e-12)
    with pytest.raises(ValueError) as err:
        metrics.cckl(p, LABELS, log_probs=logits)  # logits, not log-probabilities
    assert "log_probs must be log(probs)" in one_line(err) and "log_softmax" in str(err.value)
    other = torch.log_softmax(logits.flip(0), 1)  # log-probabilities of other rows
    with pytest.raises(ValueError, match="log_probs must be log"):
        metrics.cckl(p, LABELS, log_probs=other)
    with pytest.raises(ValueError, match="shape of probs"):
        metrics.cckl(p, LABELS, log_probs=logp[:, :3])
    bad = logp.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="log_probs must be log"):
        metrics.cckl(p, LABELS, log_probs=bad)


def test_kl_js_reject_non_distributions():
    p, q = softmax_rows(seed=4), softmax_rows(seed=5)
    with pytest.raises(ValueError, match="p rows must sum to 1"):
        metrics.kl(2 * p, q)
    with pytest.raises(ValueError, match="q rows must sum to 1"):
        metrics.kl(p, q / 2)
    with pytest.raises(ValueError, match="q has negative entries"):
        metrics.js(p, torch.log(q))
    with pytest.raises(ValueError, match="scalar"):
        metrics.kl(torch.tensor(1.0), torch.tensor(1.0))


def test_pair_and_count_helpers_check_labels():
    with pytest.raises(ValueError, match="integer"):
        metrics.cross_partner_counts([0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="integer"):
        metrics.sample_cross_pairs(np.array([0.5, 1.5, 2.5]), 5)
    with pytest.raises(ValueError, match="integer >= 0"):
        metrics.sample_cross_pairs([0, 1, 1], 2.5)
    assert metrics.cross_partner_counts([0, 1, 1]).tolist() == [2, 1, 1]


@pytest.mark.parametrize("bad", ["10", 10.0, True])
def test_metrics_refuse_non_int_num_classes(bad):
    p, y = softmax_rows(k=10), torch.arange(12) % 10
    for call in (lambda: metrics.cckl(p, y, num_classes=bad),
                 lambda: metrics.theorem_terms(p, y, num_classes=bad),
                 lambda: metrics.cross_partner_counts(y, num_classes=bad),
                 lambda: metrics.smooth_labels(y, bad, 0.9)):
        with pytest.raises(TypeError) as err:
            call()
        type_error_naming(err, "num_classes")


STRING_LABELS = [["a", "b", "c", "a"], np.array(["a", "b", "c", "a"]), ["0", "1", "2", "0"]]


NON_INT_LABELS = [torch.tensor([0.5, 1.5, 2.0, 0.0]), np.array([0.5, 1.5, 2.0, 0.0]), [0.0, 1.0, 2.0, 0.0],
                  torch.tensor([True, False, True, False])]


@pytest.mark.parametrize("bad", STRING_LABELS + NON_INT_LABELS, ids=lambda v: type(v).__name__)
def test_metrics_refuse_string_fractional_and_bool_labels(bad):
    p = softmax_rows(n=4, k=3)
    for call in (lambda: metrics.cckl(p, bad), lambda: metrics.theorem_terms(p, bad),
                 lambda: metrics.cross_partner_counts(bad), lambda: metrics.sample_cross_pairs(bad, 3),
                 lambda: metrics.smooth_labels(bad, 3, 0.9)):
        with pytest.raises(TypeError) as err:
            call()
        assert "integer class indices" in type_error_naming(err, "labels")


# --------------------------------------------------------------------------- legitimate inputs of the same kinds are accepted
def test_float32_float16_and_promoted_rows_are_accepted():
    logits = 4 * torch.randn(64, 1000, generator=torch.Generator().manual_seed(6))
    labels = torch.arange(64) % 1000
    p32 = torch.softmax(logits, 1)
    v32 = metrics.cckl(p32, labels)
    assert math.isfinite(v32)
    assert metrics.cckl(p32.double(), labels) == pytest.approx(v32, rel=1e-12)  # float64 copy of float32 rows
    p16 = torch.softmax(logits[:, :10] / 4, 1).half()  # no underflow to 0: finite CCKL
    assert math.isfinite(metrics.cckl(p16, torch.arange(64) % 10))
    assert torch.isfinite(metrics.kl(p32.double()[:5], p32[5:10])).all()  # mixed dtypes


def test_clamped_renormalised_and_smoothed_rows_are_accepted():
    rng = np.random.default_rng(7)
    gamma = rng.gamma(np.full((2, 50, 10), 0.05))
    probs = torch.tensor(gamma / gamma.sum(-1, keepdims=True)).clamp_min(1e-12)
    probs = probs / probs.sum(-1, keepdim=True)
    y = metrics.smooth_labels(torch.tensor(rng.integers(0, 10, 50)), 10, 0.9)
    lhs, rhs = metrics.pair_inequality_sides(probs[0], probs[1], y, y.roll(1, 0))
    assert lhs.shape == rhs.shape == (50,) and torch.isfinite(rhs).all()
    terms = metrics.theorem_terms(probs[0], torch.arange(50) % 10)
    assert terms["holds_pair"]


def test_single_rows_lists_and_numpy_labels_are_accepted():
    expected = 0.5 * (math.log(0.5 / 0.25) + math.log(0.5 / 0.75))
    assert float(metrics.kl([0.5, 0.5], [0.25, 0.75])) == pytest.approx(expected, rel=1e-12)
    p = softmax_rows()
    ref = metrics.cckl(p, LABELS)
    assert metrics.cckl(p.numpy(), LABELS.numpy().astype(np.int32)) == pytest.approx(ref, rel=1e-12)
    assert metrics.cckl(p.tolist(), LABELS.tolist()) == pytest.approx(ref, rel=1e-12)
    assert metrics.kl(torch.empty(0, 4), torch.empty(0, 4)).shape == (0,)


def test_one_hot_integer_rows_are_distributions():
    assert float(metrics.js(torch.tensor([1, 0]), torch.tensor([0, 1]))) == pytest.approx(math.log(2))
